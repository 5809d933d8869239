//! Criterion benchmarks of the matmul and overhead cases of benches/shapes.json
//! (`cargo bench -p benches --bench matmul`).

use benches::{matmul_cases, overhead_cases};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let mut rng = autograd::rng::Rng::new(1);
    let mut cases = matmul_cases(&mut rng).expect("matmul cases");
    cases.extend(overhead_cases().expect("overhead cases"));
    for mut case in cases.into_iter().filter(|c| !c.gpu_only) {
        let mut group = c.benchmark_group(format!("{}/{}", case.group, case.name));
        group.sample_size(10);
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
