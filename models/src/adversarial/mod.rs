//! The adversarial models (GANs: Goodfellow et al. 2014 and the lecture's DCGAN, WGAN, ...)
//! go here, one file per model like the other families: a generator and a discriminator trained
//! against each other, `Family::Adversarial` in their `Entry`, losses `d_loss` and `g_loss`, and
//! `eval` with the sample-quality metrics only (FCD, KID, label histogram: the default
//! [`GenerativeModel::eval`](crate::model::GenerativeModel::eval)). None is written yet.
