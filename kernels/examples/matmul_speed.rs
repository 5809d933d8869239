//! Times `kernels::cpu::matmul::matmul` on a few shapes and prints GFLOP/s (median of runs).
//! Run with `RAYON_NUM_THREADS=1` or `2 cargo run --release -p kernels --example matmul_speed`.
//! An optional argument `f64` times double precision instead.

use kernels::cpu::matmul::{matmul, MatRef};
use kernels::Float;
use std::time::Instant;

fn time_shape<T: Float>(m: usize, k: usize, n: usize, transpose_b: bool) -> f64 {
    let a: Vec<T> = (0..m * k)
        .map(|i| T::from_f64((i % 13) as f64 * 0.1 - 0.6))
        .collect();
    let b: Vec<T> = (0..k * n)
        .map(|i| T::from_f64((i % 7) as f64 * 0.1 - 0.3))
        .collect();
    let mut c = vec![T::ZERO; m * n];
    let a_ref = MatRef {
        data: &a,
        offset: 0,
        row_stride: k,
        col_stride: 1,
    };
    // Transposed B: the buffer holds B^T [n, k] row-major.
    let b_ref = if transpose_b {
        MatRef {
            data: &b,
            offset: 0,
            row_stride: 1,
            col_stride: k,
        }
    } else {
        MatRef {
            data: &b,
            offset: 0,
            row_stride: n,
            col_stride: 1,
        }
    };
    let flops = 2.0 * (m * n * k) as f64;
    // Enough repetitions for ~0.2 s per measurement.
    let reps = ((2e10 / flops) as usize).clamp(1, 10_000);
    matmul(m, k, n, a_ref, b_ref, &mut c);
    let mut rates: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                matmul(m, k, n, a_ref, b_ref, &mut c);
            }
            flops * reps as f64 / start.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(|x, y| x.partial_cmp(y).unwrap());
    rates[rates.len() / 2]
}

fn main() {
    let double = std::env::args().any(|a| a == "f64");
    let shapes = [
        (128, 784, 512),
        (512, 512, 512),
        (1024, 1024, 1024),
        (64, 64, 64),
        (32, 32, 32),
        (128, 512, 10),
        (784, 128, 512),
    ];
    println!(
        "threads: {}, {}",
        rayon::current_num_threads(),
        if double { "f64" } else { "f32" }
    );
    for &(m, k, n) in &shapes {
        let (plain, transposed) = if double {
            (
                time_shape::<f64>(m, k, n, false),
                time_shape::<f64>(m, k, n, true),
            )
        } else {
            (
                time_shape::<f32>(m, k, n, false),
                time_shape::<f32>(m, k, n, true),
            )
        };
        println!("(m,k,n)=({m:4},{k:4},{n:4})  B row-major {plain:7.1} GFLOP/s   B transposed {transposed:7.1} GFLOP/s");
    }
}
