//! Data derived from the digits themselves, with attributes that can be measured exactly, for
//! the conditional and translation models: [`morpho`], the Morpho-MNIST measurements
//! (thickness, slant, width, height) and perturbations (thinning, thickening, slanting).

pub mod morpho;
