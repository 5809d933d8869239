//! The lecture's generative models, their data and the genzoo program.

pub mod data;
