//! Graph export as Graphviz DOT: what the define-by-run engine recorded, op by op, with shapes.
//! Render with `dot -Tsvg graph.dot > graph.svg`.

use crate::tensor::{Tensor, TensorId};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;

/// The graph that produced `root`, as DOT. `names` labels known tensors (e.g. the parameters
/// from `named_parameters()`); other leaves are labelled "input" or "variable".
pub fn to_dot(root: &Tensor, names: &[(String, Tensor)]) -> String {
    let names: HashMap<TensorId, &str> = names.iter().map(|(n, t)| (t.id(), n.as_str())).collect();
    let mut out = String::from(
        "digraph autograd {\n  rankdir=BT;\n  node [fontname=\"monospace\", fontsize=10];\n",
    );
    let mut seen: HashSet<TensorId> = HashSet::new();
    let mut stack = vec![root.clone()];
    while let Some(t) = stack.pop() {
        if !seen.insert(t.id()) {
            continue;
        }
        let id = t.id().as_usize();
        let shape = format!("{:?} {}", t.shape(), t.dtype());
        let (label, style) = match (t.op(), names.get(&t.id())) {
            (_, Some(name)) => (
                format!("{name}\\n{shape}"),
                "shape=box, style=filled, fillcolor=lightblue",
            ),
            (Some(op), None) => (format!("{}\\n{shape}", op.name()), "shape=ellipse"),
            (None, None) if t.requires_grad() => (
                format!("variable\\n{shape}"),
                "shape=box, style=filled, fillcolor=lightblue",
            ),
            (None, None) => (format!("input\\n{shape}"), "shape=box"),
        };
        let _ = writeln!(out, "  t{id} [label=\"{label}\", {style}];");
        if let Some(op) = t.op() {
            for input in op.inputs() {
                let _ = writeln!(out, "  t{} -> t{id};", input.id().as_usize());
                stack.push(input.clone());
            }
        }
    }
    out.push_str("}\n");
    out
}

impl Tensor {
    /// This tensor's graph as Graphviz DOT (see [`to_dot`]).
    pub fn to_dot(&self) -> String {
        to_dot(self, &[])
    }
}
