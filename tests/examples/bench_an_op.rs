//! Timing one op against a roofline: how fast is an op compared with what this CPU can do?
//!
//! ```text
//! cargo run --release --example bench_an_op
//! ```
//!
//! The compute roof is our own matmul's rate on a 1024^3 f32 product (the engine's best-tuned
//! kernel; the median of several runs). Against it: a DCGAN discriminator convolution
//! (64 -> 128 channels, 4x4, stride 2, batch 64 at 16x16), which is compute-bound and should
//! get a good fraction of the roof, and a softmax over a [4096, 1024] tensor, which does only a
//! few flops per element it moves: it is set against a second, memory roof (the GB/s of the
//! streaming op x + 1 on the same tensor) as well. An op far below both roofs is limited by
//! neither: this example found the CPU softmax (kernels/src/cpu/reduce.rs) at 1 GB/s, calling
//! the scalar `exp` twice per element where the elementwise `exp`, timed last for contrast, is
//! vectorised; with each exponential computed once by the vectorisable `exp` it moves about
//! 10 GB/s (BENCHMARKS.md).
//! Timings vary with the machine and its load and are not asserted; the check is
//! that every figure is finite and positive (exit non-zero otherwise). A few seconds.

use autograd::{Conv2dOptions, DType, Rng, Tensor};
use std::time::Instant;

/// The median wall time of `runs` calls of `f` (after one warm-up call), in seconds.
fn median_secs(
    runs: usize,
    mut f: impl FnMut() -> autograd::Result<Tensor>,
) -> autograd::Result<f64> {
    f()?; // warm-up: first-touch allocation, thread pool start
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let out = f()?;
        times.push(start.elapsed().as_secs_f64());
        drop(out);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[runs / 2])
}

fn main() -> Result<(), String> {
    let run = || -> autograd::Result<Vec<(&'static str, f64)>> {
        let mut rng = Rng::new(0);
        let f32_randn = |shape: &[usize], rng: &mut Rng| Tensor::randn(shape, DType::F32, rng);

        // the roof: 2 n^3 flops
        let n = 1024;
        let (a, b) = (f32_randn(&[n, n], &mut rng), f32_randn(&[n, n], &mut rng));
        let t = median_secs(7, || a.matmul(&b))?;
        let roof = 2.0 * (n * n * n) as f64 / t / 1e9;
        println!(
            "matmul {n}^3 f32:          {:7.2} ms  {roof:7.1} GFLOP/s  (the roof)",
            t * 1e3
        );

        // conv: 2 flops per multiply-add, N * Cout * Ho * Wo * Cin * kh * kw of them
        let x = f32_randn(&[64, 64, 16, 16], &mut rng);
        let w = f32_randn(&[128, 64, 4, 4], &mut rng);
        let opts = Conv2dOptions::default().stride(2).padding(1);
        let t = median_secs(7, || x.conv2d(&w, None, &opts))?;
        let conv = 2.0 * (64 * 128 * 8 * 8 * 64 * 4 * 4) as f64 / t / 1e9;
        println!(
            "conv2d DCGAN 64->128 4x4/2: {:7.2} ms  {conv:7.1} GFLOP/s  = {:.0}% of the roof",
            t * 1e3,
            100.0 * conv / roof
        );

        // a second roof, for memory: a streaming op (x + 1: one read, one write per element)
        let s = f32_randn(&[4096, 1024], &mut rng);
        let bytes = 2.0 * 4.0 * s.numel() as f64;
        let t = median_secs(7, || s.add_scalar(1.0))?;
        let mem_roof = bytes / t / 1e9;
        println!(
            "x + 1 [4096, 1024] f32:    {:7.2} ms  {mem_roof:7.1} GB/s    (the memory roof)",
            t * 1e3
        );

        // softmax moves the same bytes, with ~5 flops per element (max, subtract, exp, sum,
        // divide; exp counted as one): which roof is it under?
        let t = median_secs(7, || s.softmax(-1))?;
        let gbs = bytes / t / 1e9;
        let soft = 5.0 * s.numel() as f64 / t / 1e9;
        println!(
            "softmax [4096, 1024] f32:   {:7.2} ms  {gbs:7.1} GB/s    = {:.0}% of the memory roof, {soft:.1} GFLOP/s = {:.1}% of the compute roof",
            t * 1e3,
            100.0 * gbs / mem_roof,
            100.0 * soft / roof
        );
        // the contrast: exp alone, the vectorised elementwise kernel, on the same tensor
        let t = median_secs(7, || s.exp())?;
        println!(
            "exp [4096, 1024] f32:       {:7.2} ms  {:7.1} GB/s",
            t * 1e3,
            bytes / t / 1e9
        );
        Ok(vec![
            ("matmul GFLOP/s", roof),
            ("conv2d GFLOP/s", conv),
            ("x + 1 GB/s", mem_roof),
            ("softmax GB/s", gbs),
        ])
    };
    let figures = run().map_err(|e| e.to_string())?;
    for (name, v) in figures {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!("{name} is {v}: expected a finite positive rate"));
        }
    }
    Ok(())
}
