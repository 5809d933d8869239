//! Criterion benchmarks of the model_steps cases of benches/shapes.json: one training iteration
//! of a zoo model, `GenerativeModel::train_step` as `genzoo train` runs it
//! (`cargo bench -p benches --bench model_steps`). The JSON-lines `compare` command times the
//! same case runners.

use benches::model_steps::model_step_cases;
use criterion::{criterion_group, criterion_main, Criterion};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let mut rng = autograd::rng::Rng::new(1);
    let cases = model_step_cases(&mut rng).expect("model step cases");
    for mut case in cases.into_iter().filter(|c| !c.gpu_only) {
        c.benchmark_group(format!("{}/{}", case.group, case.name))
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(5))
            .bench_function("train_step", |b| {
                b.iter(|| (case.fwdbwd)().expect("train step"))
            });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
