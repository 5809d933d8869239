//! Times `kernels::cpu::matmul::matmul` and prints GFLOP/s: the median of 7 measurements and,
//! in brackets, the best (other processes on the machine only ever make a run slower).
//!
//! ```text
//! RAYON_NUM_THREADS=2 cargo run --release -p kernels --example matmul_speed [f64] [m,k,n ...]
//! ```
//!
//! Without shapes it times a default set. Each shape is timed with B row-major and with B read
//! through a transposed view (row stride 1), which exercises the strided packing path.

use kernels::cpu::matmul::{matmul, MatRef};
use kernels::Float;
use std::time::Instant;

/// (median, best) GFLOP/s.
fn gflops<T: Float>(m: usize, k: usize, n: usize, transpose_b: bool) -> (f64, f64) {
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
    let b_ref = if transpose_b {
        // The buffer holds B^T [n, k] row-major.
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
    // Enough repetitions for about MATMUL_BENCH_MS milliseconds (default 200) per measurement.
    let ms: f64 = std::env::var("MATMUL_BENCH_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200.0);
    let reps = ((ms * 2e8 / flops) as usize).clamp(1, 100_000);
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
    rates.sort_by(|x, y| x.total_cmp(y));
    (rates[rates.len() / 2], rates[rates.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let double = args.iter().any(|a| a == "f64");
    let mut shapes: Vec<(usize, usize, usize)> = args
        .iter()
        .filter(|a| a.contains(','))
        .map(|a| {
            let d: Vec<usize> = a
                .split(',')
                .map(|x| x.trim().parse().expect("m,k,n"))
                .collect();
            (d[0], d[1], d[2])
        })
        .collect();
    if shapes.is_empty() {
        shapes = vec![
            (128, 784, 512),
            (512, 512, 512),
            (1024, 1024, 1024),
            (784, 128, 512),
            (128, 512, 10),
            (64, 64, 64),
            (32, 32, 32),
        ];
    }
    let precision = if double { "f64" } else { "f32" };
    println!("threads: {}, {precision}", rayon::current_num_threads());
    for (m, k, n) in shapes {
        let (plain, transposed) = if double {
            (gflops::<f64>(m, k, n, false), gflops::<f64>(m, k, n, true))
        } else {
            (gflops::<f32>(m, k, n, false), gflops::<f32>(m, k, n, true))
        };
        println!(
            "(m,k,n)=({m:4},{k:4},{n:4})  B row-major {:6.1} ({:5.1}) GFLOP/s  B transposed {:6.1} ({:5.1}) GFLOP/s",
            plain.0, plain.1, transposed.0, transposed.1
        );
    }
}
