use kernels::cpu::matmul::{matmul_with, MatRef};
use std::time::Instant;
fn main() {
    for &(m, k, n) in &[
        (64usize, 576usize, 352usize),
        (64, 320, 784),
        (128, 1024, 196),
        (64, 1024, 196),
        (1024, 1024, 1024),
    ] {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; m * n];
        let reps = (2e9 / (2.0 * (m * n * k) as f64)) as usize + 1;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..reps {
                matmul_with(
                    m,
                    k,
                    n,
                    MatRef {
                        data: &a,
                        offset: 0,
                        row_stride: k,
                        col_stride: 1,
                    },
                    MatRef {
                        data: &b,
                        offset: 0,
                        row_stride: n,
                        col_stride: 1,
                    },
                    &mut c,
                    1,
                );
            }
            best = best.min(t.elapsed().as_secs_f64() / reps as f64);
        }
        println!(
            "{m}x{k}x{n}: {:.3} ms, {:.1} GFLOP/s (1 thread)",
            best * 1e3,
            2.0 * (m * n * k) as f64 / best / 1e9
        );
    }
}
