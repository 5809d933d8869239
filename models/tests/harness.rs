//! The evaluation harness on the shipped classifiers and known inputs: the harness classifier
//! classifies the embedded test split at >= 98.5%, the style classifier the test digits drawn in
//! each of the domains' nine strokes and leans at >= 94% (better than the harness classifier
//! reading them with their style undone), identical image sets are at distance about 0, and sets
//! unlike digits are far, with real-vs-real baselines beside every figure.

use autograd::{DType, Rng, Tensor};
use models::domains::sets::{self, Lean, Stroke};
use models::program::classifier::{training, Classifier};
use models::program::data::{self, Pixels};
use models::program::eval::{EvalContext, Metric};

fn get<'a>(m: &'a [Metric], name: &str) -> &'a Metric {
    m.iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("no {name} in {m:?}"))
}

#[test]
fn the_shipped_classifier_reaches_98_5_percent() {
    let data = data::embedded().unwrap();
    let c = Classifier::shipped().unwrap();
    let (acc, nll) = c.accuracy_and_loss(&data.test).unwrap();
    assert!(acc >= 0.985, "test accuracy {acc}");
    assert!(nll < 0.1, "test NLL {nll}");
}

#[test]
fn the_shipped_style_classifier_reads_every_style() {
    let data = data::embedded().unwrap();
    // half of the test digits, to keep the test short (all 999: `genzoo eval` of a classifier run)
    let test = data.test.head(500);
    let style = training::accuracy_by_style(&Classifier::shipped_styles().unwrap(), &test).unwrap();
    let harness = training::accuracy_by_style(&Classifier::shipped().unwrap(), &test).unwrap();
    for stroke in Stroke::ALL {
        for lean in Lean::ALL {
            let name = format!("test_accuracy_{}_{}", stroke.word(), lean.word());
            let m = get(&style, &name);
            eprintln!("{name}: {:.3}", m.value);
            assert!(m.value >= 0.94, "style classifier: {m:?}");
        }
    }
    let ours = get(&style, "test_accuracy_styled").value;
    let theirs = get(&harness, "test_accuracy_styled_style_undone").value;
    assert!(
        ours > theirs + 0.01,
        "the style classifier reads the styled digits as drawn ({ours}) better than the harness classifier with the style undone ({theirs})"
    );
    // the seam the domain models read their digits through is the style classifier
    let mut ctx = EvalContext::new(&data, 0, 999);
    let thin: Vec<u8> = data.test.images[..200 * 784]
        .chunks(784)
        .flat_map(|img| sets::with_attributes(img, Stroke::Thin, Lean::Left))
        .collect();
    let labels: Vec<usize> = data.test.labels[..200]
        .iter()
        .map(|&l| usize::from(l))
        .collect();
    let read = sets::read_digits(&mut ctx, &thin).unwrap();
    assert!(sets::share_equal(&read, &labels) >= 0.93);
}

#[test]
fn sample_metrics_on_known_inputs() {
    let data = data::embedded().unwrap();
    let mut ctx = EvalContext::new(&data, 0, 999);
    // the test images themselves, as "samples", with their true labels as the intended ones
    let real = data.test.tensor(Pixels::Unit, &mut Rng::new(0)).unwrap();
    let labels: Vec<usize> = data.test.labels.iter().map(|&l| usize::from(l)).collect();
    let same = ctx
        .sample_metrics(&real, Pixels::Unit, Some(&labels))
        .unwrap();
    let fcd = get(&same, "fcd");
    assert!(fcd.value < 1e-6, "identical sets: {fcd:?}");
    let base = fcd.baseline.unwrap();
    assert!(base > 0.0, "train vs test is not identical: {base}");
    // the unbiased estimate of a set against itself is -(2/n) (mean k(x, x) - mean k(x, y)):
    // about 0 on the scale of the distances below
    let kid = get(&same, "kid");
    assert!(kid.value.abs() < 0.05, "{kid:?}");
    assert!(get(&same, "intended_label_accuracy").value >= 0.985);
    assert_eq!(get(&same, "classes_covered").value, 10.0);
    assert!(get(&same, "label_kl_to_uniform").value < 0.05);
    assert!(get(&same, "classifier_score").value > 8.0);
    for m in &same {
        assert!(
            m.baseline.is_some(),
            "{} has a real-vs-real baseline",
            m.name
        );
    }

    // uniform noise and blank images are far from digits
    let noise = Tensor::rand(&[500, 1, 28, 28], DType::F32, &mut Rng::new(1));
    let far = ctx.sample_metrics(&noise, Pixels::Unit, None).unwrap();
    let f = get(&far, "fcd");
    assert!(f.value > 10.0 * f.baseline.unwrap(), "noise: {f:?}");
    let k = get(&far, "kid");
    assert!(
        k.value > 0.5 && k.value > 50.0 * k.baseline.unwrap().abs(),
        "noise: {k:?}"
    );
    let blank = Tensor::zeros(&[500, 1, 28, 28], DType::F32);
    let b = ctx.sample_metrics(&blank, Pixels::Unit, None).unwrap();
    assert!(get(&b, "fcd").value > 10.0 * get(&b, "fcd").baseline.unwrap());
    // every blank image gets the same label: one class covered, KL to uniform = ln 10
    assert_eq!(get(&b, "classes_covered").value, 1.0);
    assert!((get(&b, "label_kl_to_uniform").value - 10f64.ln()).abs() < 1e-9);
    assert!(get(&b, "label_kl_to_uniform")
        .detail
        .as_ref()
        .unwrap()
        .contains("predicted labels"));

    // half the test set against all of it is closer than noise
    let half = real.narrow(0, 0, 500).unwrap().contiguous().unwrap();
    let h = ctx.sample_metrics(&half, Pixels::Unit, None).unwrap();
    assert!(get(&h, "fcd").value < f.value / 10.0);

    // wrong shapes and counts are errors, not panics
    assert!(ctx
        .sample_metrics(&real.narrow(0, 0, 1).unwrap(), Pixels::Unit, None)
        .is_err());
    assert!(ctx
        .sample_metrics(&real, Pixels::Unit, Some(&labels[..10]))
        .is_err());
    assert!(ctx
        .features(&Tensor::zeros(&[2, 1, 14, 14], DType::F32))
        .is_err());
}
