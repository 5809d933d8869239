//! Reverse-mode autodiff on a micrograd-sized expression: the engine records a graph of scalar
//! ops as they run, `backward()` walks it in reverse, and the result is the chain rule written
//! out by hand.
//!
//! ```text
//! cargo run --release --example scalar_graph
//! ```
//!
//! The expression is the one in micrograd's README (g = 24.7041, dg/da = 138.8338,
//! dg/db = 645.5773). The recorded graph is printed as Graphviz DOT and written to
//! `target/examples-out/scalar_graph.dot`, and rendered to `scalar_graph.png` beside it when
//! Graphviz's `dot` is on PATH. Exits non-zero when the engine's gradients differ from the hand
//! derivation by more than 1e-12.

use autograd::{DType, Tensor};
use std::error::Error;
use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    let (av, bv) = (-4.0f64, 2.0f64);
    // rank-0 f64 tensors that ask for gradients: the leaves of the graph
    let a = Tensor::scalar(av, DType::F64).requires_grad_(true)?;
    let b = Tensor::scalar(bv, DType::F64).requires_grad_(true)?;

    // micrograd's expression, op by op; every op records itself and its inputs
    let mut c = a.add(&b)?;
    let mut d = a.mul(&b)?.add(&b.powf(3.0)?)?;
    c = c.add(&c.add_scalar(1.0)?)?; // c += c + 1
    c = c.add(&c.add_scalar(1.0)?.add(&a.neg()?)?)?; // c += 1 + c + (-a)
    d = d.add(&d.mul_scalar(2.0)?.add(&b.add(&a)?.relu()?)?)?; // d += d*2 + (b + a).relu()
    d = d.add(&d.mul_scalar(3.0)?.add(&b.sub(&a)?.relu()?)?)?; // d += 3*d + (b - a).relu()
    let e = c.sub(&d)?;
    let f = e.square()?;
    let g = f
        .div_scalar(2.0)?
        .add(&Tensor::scalar(10.0, DType::F64).div(&f)?)?; // f/2 + 10/f
    g.backward()?;
    let ga = a.grad().ok_or("a got no gradient")?.item()?;
    let gb = b.grad().ok_or("b got no gradient")?.item()?;

    // The same derivatives by hand. Unrolled, the expression is
    //   c = 2 (2 (a + b) + 1) + 1 - a = 3a + 4b + 3
    //   d1 = ab + b^3,  d2 = 3 d1 + relu(a + b),  d = 4 d2 + relu(b - a)
    //   e = c - d,  f = e^2,  g = f/2 + 10/f
    // and the chain rule from the top down:
    let (cv, d1) = (3.0 * av + 4.0 * bv + 3.0, av * bv + bv.powi(3));
    let step = |x: f64| if x > 0.0 { 1.0 } else { 0.0 }; // relu'(x)
    let d2 = 3.0 * d1 + (av + bv).max(0.0);
    let dv = 4.0 * d2 + (bv - av).max(0.0);
    let (ev, fv) = (cv - dv, (cv - dv).powi(2));
    let dg_df = 0.5 - 10.0 / (fv * fv); // d(f/2 + 10/f)/df
    let dg_de = dg_df * 2.0 * ev; // df/de = 2e

    // dg/dc = dg/de and dg/dd = -dg/de; then dc/da = 3, dc/db = 4 and
    //   dd/da = 4 (dd1/da * 3 + relu'(a + b)) - relu'(b - a),  dd1/da = b
    //   dd/db = 4 (dd1/db * 3 + relu'(a + b)) + relu'(b - a),  dd1/db = a + 3b^2
    let dd_da = 4.0 * (3.0 * bv + step(av + bv)) - step(bv - av);
    let dd_db = 4.0 * (3.0 * (av + 3.0 * bv * bv) + step(av + bv)) + step(bv - av);
    let (hand_a, hand_b) = (dg_de * (3.0 - dd_da), dg_de * (4.0 - dd_db));

    let gv = g.item()?;
    println!("g = {gv:.4}  (micrograd: 24.7041)");
    println!("dg/da: engine {ga:.10}  by hand {hand_a:.10}  (micrograd: 138.8338)");
    println!("dg/db: engine {gb:.10}  by hand {hand_b:.10}  (micrograd: 645.5773)");
    if (gv - 24.7041).abs() > 1e-4 {
        return Err(format!("g = {gv}, expected 24.7041").into());
    }
    for (name, engine, hand) in [("a", ga, hand_a), ("b", gb, hand_b)] {
        if (engine - hand).abs() > 1e-12 {
            return Err(format!("dg/d{name}: engine {engine} != hand {hand}").into());
        }
    }

    // The recorded graph, leaves named; render with `dot -Tpng`.
    let dot = autograd::dot::to_dot(&g, &[("a".into(), a.clone()), ("b".into(), b.clone())]);
    println!("\n{dot}");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/examples-out");
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let (dot_path, png_path) = (dir.join("scalar_graph.dot"), dir.join("scalar_graph.png"));
    std::fs::write(&dot_path, &dot)?;
    println!("wrote {}", dot_path.display());
    match Command::new("dot")
        .arg("-Tpng")
        .arg(&dot_path)
        .arg("-o")
        .arg(&png_path)
        .status()
    {
        Ok(s) if s.success() => println!("rendered {}", png_path.display()),
        Ok(s) => return Err(format!("dot -Tpng failed: {s}").into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("Graphviz `dot` is not on PATH: skipped rendering the PNG")
        }
        Err(e) => return Err(format!("could not run dot: {e}").into()),
    }
    Ok(())
}
