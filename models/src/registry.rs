//! The registry: every model `genzoo` knows, by name. The only file that names every model; the
//! models themselves know only their own [`Entry`] ([`crate::model`]).
//!
//! Adding a model is one file and one line: the model's file (see [`crate::model`]) and
//! `&its::ENTRY` in [`ENTRIES`].

use crate::adversarial::{
    cgan, cycle_gan, dcgan, gan, infogan, progan, puzzle_gan, stargan, text2image, wgan,
};
use crate::autoregressive::{fvsbn, nade, pixel_cnn, pixel_cnn_colour, pixel_rnn, rnade};
use crate::latent::{aae, vae, wae};
use crate::model::Entry;
use crate::program::classifier;
use autograd::{Error, Result};

/// Every model `genzoo` knows, in `genzoo list` order.
pub static ENTRIES: &[&Entry] = &[
    &classifier::training::ENTRY,
    &vae::ENTRY,
    &vae::CONV_ENTRY,
    &fvsbn::ENTRY,
    &nade::ENTRY,
    &rnade::ENTRY,
    &pixel_cnn::ENTRY,
    &pixel_cnn_colour::ENTRY,
    &pixel_rnn::ROW_ENTRY,
    &pixel_rnn::DIAGONAL_ENTRY,
    &aae::ENTRY,
    &wae::MMD_ENTRY,
    &wae::GAN_ENTRY,
    &gan::ENTRY,
    &dcgan::ENTRY,
    &wgan::WGAN_ENTRY,
    &wgan::WGAN_GP_ENTRY,
    &infogan::ENTRY,
    &cgan::ENTRY,
    &cycle_gan::ENTRY,
    &text2image::ENTRY,
    &stargan::ENTRY,
    &puzzle_gan::ENTRY,
    &progan::ENTRY,
];

/// The entry called `name`, or an error listing the known names.
pub fn find(name: &str) -> Result<&'static Entry> {
    ENTRIES
        .iter()
        .copied()
        .find(|e| e.name == name)
        .ok_or_else(|| {
            Error::invalid(
                "genzoo",
                format!(
                    "no model called {name:?}; known models: {}",
                    names().join(", ")
                ),
            )
        })
}

pub fn names() -> Vec<&'static str> {
    ENTRIES.iter().map(|e| e.name).collect()
}
