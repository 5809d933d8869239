//! Criterion benchmarks of the conv2d, conv_transpose2d, masked_conv2d (and the same shapes
//! through plain conv2d) and lstm cases of benches/shapes.json, forward and forward+backward
//! (`cargo bench -p benches --bench conv_lstm`). The JSON-lines `compare` command times the
//! same case runners.

use benches::{conv::conv_cases, lstm::lstm_cases};
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut rng = autograd::rng::Rng::new(1);
    let mut cases = conv_cases(&mut rng).expect("conv cases");
    cases.extend(lstm_cases(&mut rng).expect("lstm cases"));
    for mut case in cases.into_iter().filter(|c| !c.gpu_only) {
        let mut group = c.benchmark_group(format!("{}/{}", case.group, case.name));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        if let Some(f) = case.fwd.as_mut() {
            group.bench_function("fwd", |b| b.iter(|| f().expect("forward")));
        }
        group.bench_function("fwdbwd", |b| {
            b.iter(|| (case.fwdbwd)().expect("forward+backward"))
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
