//! The caching allocator under a training loop: after the first steps every block a step needs
//! comes from the pool, so the device memory in use and the driver allocations stay flat over
//! 1,000 steps. On the emulated device (the same pool over host memory) and on GPU 0 when there
//! is one, in a process of its own so that no other test's tensors are counted.

mod common;

use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{device_memory, DType, Device, Rng, Tensor};

#[test]
fn device_memory_stays_flat_over_a_thousand_training_steps() {
    for device in common::cuda_devices() {
        stays_flat(device);
    }
}

fn stays_flat(device: Device) {
    let mut rng = Rng::new(1);
    let param = |shape: &[usize], rng: &mut Rng| {
        Tensor::randn(shape, DType::F32, rng)
            .to_device(device)
            .unwrap()
            .detach()
            .requires_grad_(true)
            .unwrap()
    };
    let (w1, w2) = (param(&[12, 16], &mut rng), param(&[16, 1], &mut rng));
    let mut adam = Adam::new(vec![w1.clone(), w2.clone()], AdamConfig::default()).unwrap();
    let x = Tensor::randn(&[32, 12], DType::F32, &mut rng)
        .to_device(device)
        .unwrap();
    let y = Tensor::randn(&[32, 1], DType::F32, &mut rng)
        .to_device(device)
        .unwrap();
    let mut at = Vec::new();
    for step in 1..=1000 {
        let out = x.matmul(&w1).unwrap().tanh().unwrap().matmul(&w2).unwrap();
        let loss = out.sub(&y).unwrap().square().unwrap().mean_all().unwrap();
        adam.minimize(&loss).unwrap();
        drop((out, loss));
        if step == 10 || step == 1000 {
            at.push(device_memory(device).expect("a CUDA device has an allocator"));
        }
    }
    let (warm, end) = (at[0], at[1]);
    assert!(
        warm.current_bytes > 0 && warm.allocations > 0,
        "{device}: {warm:?}"
    );
    assert_eq!(
        end.current_bytes, warm.current_bytes,
        "{device}: {warm:?} then {end:?}"
    );
    assert_eq!(
        end.allocations, warm.allocations,
        "{device}: {warm:?} then {end:?}"
    );
    assert_eq!(
        end.peak_bytes, warm.peak_bytes,
        "{device}: {warm:?} then {end:?}"
    );
}
