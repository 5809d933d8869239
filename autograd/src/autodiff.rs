//! The reverse-mode engine: order the graph, walk it backwards from the outputs, and accumulate
//! each tensor's gradient over all of its uses.

use crate::backward::backward;
use crate::dtype::DType;
use crate::error::{Error, Result};
use crate::grad_mode::GradModeGuard;
use crate::profiler;
use crate::tensor::{Tensor, TensorId};
use std::collections::{HashMap, HashSet};

/// Every tensor that requires grad and is reachable from `roots`, inputs before the tensors made
/// from them (iterative depth-first search, so deep graphs do not overflow the stack).
fn topological_order(roots: &[Tensor]) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited: HashSet<TensorId> = HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = roots.iter().rev().map(|t| (t.clone(), false)).collect();
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !t.requires_grad() || !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(op) = t.op() {
            for input in op.inputs().into_iter().rev() {
                if input.requires_grad() && !visited.contains(&input.id()) {
                    stack.push((input.clone(), false));
                }
            }
        }
    }
    order
}

/// Two gradients of one tensor added: bf16 ones (which have no add of their own) in f32,
/// rounded once.
fn sum_of_gradients(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dtype() != DType::BF16 {
        return a.add(b);
    }
    a.to_dtype(DType::F32)?
        .add(&b.to_dtype(DType::F32)?)?
        .to_dtype(DType::BF16)
}

fn accumulate(grads: &mut HashMap<TensorId, Tensor>, id: TensorId, g: Tensor) -> Result<()> {
    let total = match grads.remove(&id) {
        Some(previous) => sum_of_gradients(&previous, &g)?,
        None => g,
    };
    grads.insert(id, total);
    Ok(())
}

/// The tensors of `order` (inputs first) through which a gradient reaches a tensor of `keep`:
/// those in `keep` and those with such an input. The walk computes gradients only for these,
/// so a gradient that would only flow to tensors nobody asked for is never computed (PyTorch's
/// `backward(inputs=...)`: a G step does not compute D's weight gradients).
fn leading_to(order: &[Tensor], keep: &HashSet<TensorId>) -> HashSet<TensorId> {
    let mut needed = HashSet::new();
    for t in order {
        let feeds_kept = keep.contains(&t.id())
            || t.op()
                .is_some_and(|op| op.inputs().iter().any(|i| needed.contains(&i.id())));
        if feeds_kept {
            needed.insert(t.id());
        }
    }
    needed
}

/// Which tensors the walk differentiates into.
enum Wanted {
    /// Every tensor that requires grad: a plain backward into all reachable leaves, where each
    /// such tensor leads to one of them, so pruning would find nothing to skip.
    All,
    /// Only those through which a gradient reaches `keep` ([`leading_to`]).
    LeadingToKept,
}

/// Runs the backward walk over `order` (`topological_order(outputs)`). Returns the gradient of
/// every tensor in `keep` that was reached.
fn run(
    outputs: &[Tensor],
    grad_outputs: &[Tensor],
    order: Vec<Tensor>,
    keep: &HashSet<TensorId>,
    wanted: Wanted,
    create_graph: bool,
) -> Result<HashMap<TensorId, Tensor>> {
    let _mode = GradModeGuard::set(create_graph);
    // kernels run from here on (rules, gradient sums) are in the profiler's backward phase
    let _walk = profiler::BackwardWalk::enter();
    let mut grads: HashMap<TensorId, Tensor> = HashMap::new();
    for (out, g) in outputs.iter().zip(grad_outputs) {
        if out.shape() != g.shape() || out.dtype() != g.dtype() {
            return Err(Error::grad(
                "backward",
                format!(
                    "gradient {:?} {} does not match output {:?} {}",
                    g.shape(),
                    g.dtype(),
                    out.shape(),
                    out.dtype()
                ),
            ));
        }
        let g = if create_graph { g.clone() } else { g.detach() };
        accumulate(&mut grads, out.id(), g)?;
    }
    let mut kept = HashMap::new();
    let needed = match wanted {
        Wanted::All => None,
        Wanted::LeadingToKept => Some(leading_to(&order, keep)),
    };
    let wants = |x: &Tensor| match &needed {
        None => x.requires_grad(),
        Some(needed) => needed.contains(&x.id()),
    };
    for t in order.into_iter().rev() {
        let g = match grads.remove(&t.id()) {
            Some(g) => g,
            None => continue,
        };
        if let Some(op) = t.op() {
            let inputs = op.inputs();
            if inputs.iter().any(|i| wants(i)) {
                // one backward span per rule, holding the kernels the rule runs
                let input_grads = profiler::backward_rule(
                    op.name(),
                    || inputs.iter().map(|i| i.shape().to_vec()).collect(),
                    || backward(op, &t, &g, &wants),
                )?;
                for (input, ig) in inputs.into_iter().zip(input_grads) {
                    if let (true, Some(ig)) = (wants(input), ig) {
                        accumulate(&mut grads, input.id(), ig)?;
                    }
                }
            }
        }
        if keep.contains(&t.id()) {
            kept.insert(t.id(), g);
        }
    }
    Ok(kept)
}

/// Gradients of `outputs` (weighted by `grad_outputs`, or ones for scalar outputs when empty)
/// with respect to `inputs`; `None` for an input the outputs do not depend on. With
/// `create_graph` the gradients are recorded and can be differentiated again. Only the ops
/// through which a gradient reaches `inputs` are differentiated (WGAN-GP's grad_x C(x) does
/// not compute the critic's weight gradients).
pub fn grad(
    outputs: &[Tensor],
    grad_outputs: &[Tensor],
    inputs: &[Tensor],
    create_graph: bool,
) -> Result<Vec<Option<Tensor>>> {
    let seeds = seed_gradients(outputs, grad_outputs)?;
    let keep: HashSet<TensorId> = inputs.iter().map(|t| t.id()).collect();
    let order = topological_order(outputs);
    let mut got = run(
        outputs,
        &seeds,
        order,
        &keep,
        Wanted::LeadingToKept,
        create_graph,
    )?;
    Ok(inputs.iter().map(|t| got.remove(&t.id())).collect())
}

fn seed_gradients(outputs: &[Tensor], grad_outputs: &[Tensor]) -> Result<Vec<Tensor>> {
    if !grad_outputs.is_empty() {
        if grad_outputs.len() != outputs.len() {
            return Err(Error::grad(
                "grad",
                format!(
                    "{} gradients for {} outputs",
                    grad_outputs.len(),
                    outputs.len()
                ),
            ));
        }
        return Ok(grad_outputs.to_vec());
    }
    outputs
        .iter()
        .map(|o| {
            if o.numel() != 1 {
                return Err(Error::grad(
                    "backward",
                    format!(
                        "output of shape {:?} is not a scalar: pass its upstream gradient",
                        o.shape()
                    ),
                ));
            }
            Ok(o.ones_like())
        })
        .collect()
}

impl Tensor {
    /// Backward from a scalar: adds d(self)/d(leaf) to every reachable leaf's `.grad()`.
    pub fn backward(&self) -> Result<()> {
        self.backward_impl(&[], false)
    }

    /// Backward from any tensor, given the gradient of the loss with respect to it.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        self.backward_impl(std::slice::from_ref(grad), false)
    }

    /// Backward that records the gradient computation, so `.grad()` can be differentiated.
    pub fn backward_create_graph(&self) -> Result<()> {
        self.backward_impl(&[], true)
    }

    /// Backward from a scalar into the `.grad()` of `leaves` only (PyTorch's
    /// `backward(inputs=leaves)`): other leaves are left as they are, and gradients that would
    /// reach only them are not computed. One player's step of a GAN uses it, so G's step does
    /// not pay for D's weight gradients.
    pub fn backward_into(&self, leaves: &[Tensor]) -> Result<()> {
        self.backward_select(&[], false, Some(leaves))
    }

    fn backward_impl(&self, grad_outputs: &[Tensor], create_graph: bool) -> Result<()> {
        self.backward_select(grad_outputs, create_graph, None)
    }

    /// Backward into the reachable leaves, or into those of `only` among them.
    fn backward_select(
        &self,
        grad_outputs: &[Tensor],
        create_graph: bool,
        only: Option<&[Tensor]>,
    ) -> Result<()> {
        if !self.requires_grad() {
            return Err(Error::grad(
                "backward",
                "tensor does not require grad: no input of its graph is a variable",
            ));
        }
        let outputs = std::slice::from_ref(self);
        let seeds = seed_gradients(outputs, grad_outputs)?;
        // one walk of the graph gives both the order and the reachable leaves
        let order = topological_order(outputs);
        let mut leaves: Vec<Tensor> = order.iter().filter(|t| t.is_leaf()).cloned().collect();
        let wanted = match only {
            None => Wanted::All,
            Some(only) => {
                let named: HashSet<TensorId> = only.iter().map(|t| t.id()).collect();
                leaves.retain(|t| named.contains(&t.id()));
                Wanted::LeadingToKept
            }
        };
        let keep: HashSet<TensorId> = leaves.iter().map(|t| t.id()).collect();
        let mut got = run(outputs, &seeds, order, &keep, wanted, create_graph)?;
        let _mode = GradModeGuard::set(create_graph);
        // adding into `.grad()` is the walk's work too
        let _walk = profiler::BackwardWalk::enter();
        for leaf in leaves {
            if let Some(g) = got.remove(&leaf.id()) {
                let total = match leaf.grad() {
                    Some(previous) => sum_of_gradients(&previous, &g)?,
                    None => g,
                };
                leaf.set_grad(Some(total));
            }
        }
        Ok(())
    }
}
