//! The latent-variable models (vae, conv-vae, aae, wae-mmd, wae-gan) through the registry:
//! checkpoints round-trip bit for bit (and training goes on identically from a loaded one), a
//! short run writes the reconstruction, interpolation and (2-d codes) scatter pictures, and
//! `eval` reports each model's figures.

mod common;

use autograd::{no_grad, Rng};
use common::TempDir;
use models::latent::{INTERPOLATIONS, LATENT_SCATTER, RECONSTRUCTIONS};
use models::model::GenerativeModel;
use models::program::checkpoint::{self, Checkpoint, Meta};
use models::program::data;
use models::program::eval::EvalContext;
use models::program::run::{self, TrainRequest};
use models::registry;
use serde_json::{json, Value};
use std::sync::atomic::AtomicBool;

/// Each latent model with small networks (and a 2-d code where it has a choice of latent size).
fn small(model: &str) -> Vec<(String, Value)> {
    let set = |pairs: &[(&str, Value)]| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    match model {
        "vae" | "conv-vae" => set(&[
            ("hidden", json!(32)),
            ("latent", json!(2)),
            ("iwae_k", json!(2)),
        ]),
        "aae" => set(&[
            ("hidden", json!(32)),
            ("disc_hidden", json!(16)),
            ("latent", json!(2)),
            ("prior", json!("mixture")),
            ("encoder", json!("gaussian")),
        ]),
        _ => set(&[("hidden", json!(32)), ("disc_hidden", json!(16))]),
    }
}

const LATENT_MODELS: [&str; 5] = ["vae", "conv-vae", "aae", "wae-mmd", "wae-gan"];

fn build(model: &str, seed: u64) -> Box<dyn GenerativeModel> {
    let entry = registry::find(model).unwrap();
    let cfg = run::patch_config(model, (entry.default_config)(), None, &small(model)).unwrap();
    (entry.build)(&cfg, &mut Rng::new(seed)).unwrap()
}

fn bits(state: &[(String, autograd::Tensor)]) -> Vec<(String, Vec<u64>)> {
    state
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.to_vec_f64().iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

#[test]
fn checkpoints_round_trip_bit_for_bit() {
    let m = data::embedded().unwrap();
    let batch = m.train.batch(&(0..32).collect::<Vec<_>>());
    for model in LATENT_MODELS {
        let mut a = build(model, 1);
        let mut rng = Rng::new(5);
        for _ in 0..2 {
            a.train_step(&batch, &mut rng).unwrap();
        }
        let state = a.state_dict();
        // every optimizer has state after two steps: the file holds more than the weights
        assert!(state.len() > a.weights().len(), "{model}");
        let meta = Meta {
            model: model.into(),
            config: a.config(),
            train: json!({}),
            step: 2,
            epoch: 0,
            batch: 2,
            rng: rng.state(),
        };
        let bytes = checkpoint::to_bytes(&Checkpoint {
            meta,
            tensors: state.clone(),
        })
        .unwrap();
        let loaded = checkpoint::from_bytes(&bytes, model).unwrap();
        // a model built from another seed, then loaded, holds the same bits
        let mut b = build(model, 99);
        assert_ne!(bits(&b.weights()), bits(&a.weights()), "{model}");
        b.load_state_dict(&loaded.tensors, model).unwrap();
        assert_eq!(bits(&b.state_dict()), bits(&state), "{model}");
        // and training goes on identically from both
        let mut rb = Rng::from_state(&loaded.meta.rng).unwrap();
        let la = a.train_step(&batch, &mut rng).unwrap();
        let lb = b.train_step(&batch, &mut rb).unwrap();
        assert_eq!(format!("{la:?}"), format!("{lb:?}"), "{model}");
        assert_eq!(bits(&a.state_dict()), bits(&b.state_dict()), "{model}");
        // a checkpoint of another model is refused with a clear error
        if model == "wae-mmd" {
            let mut gan = build("wae-gan", 1);
            let e = gan.load_state_dict(&loaded.tensors, model).unwrap_err();
            assert!(e.to_string().contains("lacks"), "{e}");
        }
    }
}

#[test]
fn a_short_run_writes_the_latent_pictures_and_eval_reports_the_figures() {
    let never = AtomicBool::new(false);
    for model in LATENT_MODELS {
        let dir = TempDir::new(&format!("latent-{model}"));
        let req = TrainRequest {
            model: model.into(),
            epochs: Some(1),
            batch_size: Some(32),
            seed: Some(3),
            out: Some(dir.path().to_path_buf()),
            limit_batches: Some(2),
            set: small(model),
            ..Default::default()
        };
        run::train(&req, &never).unwrap();
        for f in [RECONSTRUCTIONS, INTERPOLATIONS] {
            let bytes = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{model} {f}: {e}"));
            assert!(bytes.starts_with(b"\x89PNG"), "{model} {f}");
        }
        // the 2-d codes get their scatter, the 8-d ones (WAE defaults) none
        let two_d = !model.starts_with("wae");
        assert_eq!(dir.join(LATENT_SCATTER).exists(), two_d, "{model}");

        let mut loaded = run::load(dir.path(), run::Pick::Best).unwrap();
        let data = run::data_of(&loaded.meta, None).unwrap();
        let mut ctx = EvalContext::new(&data, 1, 40);
        let metrics = no_grad(|| loaded.model.eval(&mut ctx)).unwrap();
        let names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        let want: &[&str] = match model {
            "vae" | "conv-vae" => &["neg_elbo", "kl", "fcd", "classes_covered"],
            "aae" => &[
                "reconstruction",
                "reconstruction_sq_error",
                "latent_mmd",
                "fcd",
            ],
            _ => &["reconstruction_sq_error", "latent_mmd", "fcd", "kid"],
        };
        for w in want {
            assert!(names.contains(w), "{model}: {w} in {names:?}");
        }
        assert!(
            metrics.iter().all(|m| m.value.is_finite()),
            "{model}: {metrics:?}"
        );
    }
}
