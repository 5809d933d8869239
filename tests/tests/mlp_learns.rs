//! End to end: Linear layers, activations, losses, Adam and the seeded generator together learn
//! XOR (a classifier, BCE with logits) and sin(x) (a regression, MSE). Deterministic seeds.

use autograd::nn::{self, loss, Linear, Module, Reduction};
use autograd::optim::{Adam, AdamConfig, Optimizer};
use autograd::{no_grad, DType, Result, Rng, Tensor};

#[derive(Clone, Copy)]
enum Act {
    Tanh,
    Relu,
}

/// Linear -> activation -> Linear.
struct Mlp {
    fc1: Linear,
    fc2: Linear,
    act: Act,
}

impl Mlp {
    fn new(sizes: [usize; 3], act: Act, rng: &mut Rng) -> Mlp {
        Mlp {
            fc1: Linear::new(sizes[0], sizes[1], true, DType::F32, rng).unwrap(),
            fc2: Linear::new(sizes[1], sizes[2], true, DType::F32, rng).unwrap(),
            act,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.fc1.forward(x)?;
        let h = match self.act {
            Act::Tanh => h.tanh()?,
            Act::Relu => h.relu()?,
        };
        self.fc2.forward(&h)
    }
}

impl Module for Mlp {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(&[("fc1", &self.fc1), ("fc2", &self.fc2)], |m| {
            m.named_parameters()
        })
    }
}

/// Full-batch training; returns the final loss.
fn train(
    model: &Mlp,
    x: &Tensor,
    lr: f64,
    steps: usize,
    loss_fn: impl Fn(&Tensor) -> Result<Tensor>,
) -> f64 {
    let mut opt = Adam::new(
        model.named_parameters(),
        AdamConfig {
            lr,
            ..Default::default()
        },
    )
    .unwrap();
    let mut last = f64::INFINITY;
    for _ in 0..steps {
        opt.zero_grad();
        let loss = loss_fn(&model.forward(x).unwrap()).unwrap();
        last = loss.item().unwrap();
        loss.backward().unwrap();
        opt.step().unwrap();
    }
    last
}

fn xor_run(seed: u64) -> (f64, Vec<f32>, Vec<f32>) {
    let mut rng = Rng::new(seed);
    let model = Mlp::new([2, 8, 1], Act::Tanh, &mut rng);
    let names: Vec<String> = model
        .named_parameters()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
    let x = Tensor::from_vec(vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0], &[4, 2]).unwrap();
    let y = Tensor::from_vec(vec![0.0f32, 1.0, 1.0, 0.0], &[4, 1]).unwrap();
    train(&model, &x, 0.05, 600, |out| {
        loss::bce_with_logits(out, &y, Reduction::Mean)
    });
    let logits = no_grad(|| model.forward(&x).unwrap());
    let final_loss = loss::bce_with_logits(&logits, &y, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    (
        final_loss,
        logits.sigmoid().unwrap().to_vec_f32(),
        model.fc1.weight.to_vec_f32(),
    )
}

#[test]
fn mlp_learns_xor() {
    let (loss, probs, weights) = xor_run(0);
    eprintln!("XOR: loss {loss:.2e}, probabilities {probs:?}");
    assert!(loss < 0.01, "XOR loss {loss}");
    for (p, want) in probs.iter().zip([0.0f32, 1.0, 1.0, 0.0]) {
        assert_eq!(
            (*p > 0.5) as u8 as f32,
            want,
            "prediction {p} for target {want} ({probs:?})"
        );
    }
    // the same seed gives the same run, bit for bit
    let (loss2, probs2, weights2) = xor_run(0);
    assert_eq!(loss.to_bits(), loss2.to_bits());
    assert_eq!(probs, probs2);
    assert_eq!(weights, weights2);
}

#[test]
fn mlp_fits_sine() {
    let mut rng = Rng::new(1);
    let model = Mlp::new([1, 32, 1], Act::Tanh, &mut rng);
    let n = 64;
    let xs: Vec<f32> = (0..n)
        .map(|i| -std::f32::consts::PI + 2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32)
        .collect();
    let ys: Vec<f32> = xs.iter().map(|x| x.sin()).collect();
    let x = Tensor::from_vec(xs, &[n, 1]).unwrap();
    let y = Tensor::from_vec(ys, &[n, 1]).unwrap();
    let last = train(&model, &x, 0.01, 1500, |out| {
        loss::mse(out, &y, Reduction::Mean)
    });
    let pred = no_grad(|| model.forward(&x).unwrap());
    let mse = loss::mse(&pred, &y, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    eprintln!("tanh MLP on sin(x): MSE {mse:.2e}");
    assert!(mse < 0.01, "sine MSE {mse} (last training loss {last})");
}

#[test]
fn relu_mlp_fits_sine() {
    let mut rng = Rng::new(2);
    let model = Mlp::new([1, 64, 1], Act::Relu, &mut rng);
    let n = 64;
    let xs: Vec<f32> = (0..n)
        .map(|i| -std::f32::consts::PI + 2.0 * std::f32::consts::PI * i as f32 / (n - 1) as f32)
        .collect();
    let ys: Vec<f32> = xs.iter().map(|x| x.sin()).collect();
    let x = Tensor::from_vec(xs, &[n, 1]).unwrap();
    let y = Tensor::from_vec(ys, &[n, 1]).unwrap();
    train(&model, &x, 0.01, 1500, |out| {
        loss::mse(out, &y, Reduction::Mean)
    });
    let pred = no_grad(|| model.forward(&x).unwrap());
    let mse = loss::mse(&pred, &y, Reduction::Mean)
        .unwrap()
        .item()
        .unwrap();
    eprintln!("ReLU MLP on sin(x): MSE {mse:.2e}");
    assert!(mse < 0.01, "ReLU sine MSE {mse}");
}
