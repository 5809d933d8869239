//! What the engine's device tests share: the CUDA devices to run on, reproducible values, and
//! leaves made on a device. Each test binary uses part of it.
#![allow(dead_code)]

use autograd::{DType, Device, Rng, Tensor};

/// The CUDA devices to check: the emulated one (every machine, CI included) and GPU 0 when it
/// can be used, else a line once saying so; REQUIRE_GPU=1 makes a missing GPU fail.
pub fn cuda_devices() -> Vec<Device> {
    static SKIPPED: std::sync::Once = std::sync::Once::new();
    let mut devices = vec![Device::EmulatedCuda];
    let probe = Tensor::zeros(&[1], DType::F32);
    match probe.to_device(Device::Cuda(0)) {
        Ok(_) => devices.push(Device::Cuda(0)),
        Err(e) => {
            assert!(
                std::env::var("REQUIRE_GPU").as_deref() != Ok("1"),
                "REQUIRE_GPU=1 but cuda:0 cannot be used: {e}"
            );
            SKIPPED.call_once(|| eprintln!("no GPU ({e}): the emulated device only"));
        }
    }
    devices
}

/// Reproducible values in [-1, 1).
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| 2.0 * rng.uniform() - 1.0).collect()
}

/// A leaf of `shape` holding `data` in `dtype` on `device`, requiring grad.
pub fn leaf(data: &[f64], shape: &[usize], dtype: DType, device: Device) -> Tensor {
    Tensor::from_slice(data, shape)
        .unwrap()
        .to_dtype(dtype)
        .unwrap()
        .to_device(device)
        .unwrap()
        .detach()
        .requires_grad_(true)
        .unwrap()
}
