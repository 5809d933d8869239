//! Data derived from the digits themselves, with attributes that can be measured exactly, for
//! the conditional and translation models: [`morpho`], the Morpho-MNIST measurements
//! (thickness, slant, width, height) and perturbations (thinning, thickening, slanting);
//! [`sets`], the attribute domains made with them (plain, thin, thick, slanted left and right,
//! coloured) and the captions that name a digit's attributes.

pub mod morpho;
pub mod sets;
