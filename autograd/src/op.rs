//! The ops the graph records. Each variant holds its inputs and whatever its backward rule needs;
//! the rules themselves live together in `backward.rs`.

use crate::error::Result;
use crate::tensor::Tensor;
use kernels::desc::{BinaryKind, ConvGeometry, UnaryKind};
use std::sync::Arc;

/// Index lists for gather/scatter: `data` holds indices in row-major order over `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct Indices {
    pub data: Arc<[usize]>,
    pub shape: Vec<usize>,
}

/// A user-defined op: its backward maps the output's gradient to one gradient per input.
/// The test suite uses it to show that the gradient checker catches a wrong backward.
pub trait CustomBackward: Send + Sync {
    fn name(&self) -> &'static str;
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>>;
}

#[derive(Clone)]
pub enum Op {
    Unary(Tensor, UnaryKind),
    /// add, sub, mul, div, maximum, minimum with broadcasting
    Binary(Tensor, Tensor, BinaryKind),
    /// where(mask, a, b): mask is a constant 0/1 tensor
    Where(Tensor, Tensor, Tensor),
    /// sum over sorted `axes`, keeping them as size 1 when `keepdim`
    Sum {
        input: Tensor,
        axes: Vec<usize>,
        keepdim: bool,
    },
    /// max over sorted `axes`
    Max {
        input: Tensor,
        axes: Vec<usize>,
        keepdim: bool,
    },
    Softmax {
        input: Tensor,
        axis: usize,
    },
    LogSoftmax {
        input: Tensor,
        axis: usize,
    },
    Matmul(Tensor, Tensor),
    /// a · wᵀ for a 2-D w (a Linear layer), reading w in place: no transposed view of the
    /// weight is kept in the graph, so the optimizer can update it without a copy
    MatmulT(Tensor, Tensor),
    Reshape(Tensor),
    Permute(Tensor, Vec<usize>),
    Narrow {
        input: Tensor,
        axis: usize,
        start: usize,
    },
    Expand(Tensor),
    Concat(Vec<Tensor>, usize),
    /// A contiguous copy of a strided view
    Copy(Tensor),
    Cast(Tensor),
    /// The same values moved to another device; the gradient moves back.
    ToDevice(Tensor),
    IndexSelect {
        input: Tensor,
        axis: usize,
        indices: Arc<[usize]>,
    },
    /// zeros of size `size` along `axis`, with `source` slices added at `indices`
    IndexAdd {
        source: Tensor,
        axis: usize,
        indices: Arc<[usize]>,
        size: usize,
    },
    Gather {
        input: Tensor,
        axis: usize,
        index: Indices,
    },
    ScatterAdd {
        source: Tensor,
        axis: usize,
        index: Indices,
        size: usize,
    },
    Custom(Vec<Tensor>, Arc<dyn CustomBackward>),
    /// y = conv(x, w) over the geometry's active taps (all, or a PixelCNN mask's)
    Conv {
        x: Tensor,
        w: Tensor,
        geo: Arc<ConvGeometry>,
    },
    /// dx = convᵀ(dy, w): conv's input gradient, and conv_transpose2d's forward
    ConvInputGrad {
        dy: Tensor,
        w: Tensor,
        geo: Arc<ConvGeometry>,
    },
    /// dw = Σ dy · cols(x)ᵀ: conv's weight gradient (full weight shape, zeros at masked taps)
    ConvWeightGrad {
        x: Tensor,
        dy: Tensor,
        geo: Arc<ConvGeometry>,
    },
    /// The LSTM cell's pointwise part (`ops/lstm.rs`): gates [B, 4H] (i, f, g, o) and c_prev
    /// [B, H] give one output [B, 2H] = [h' | c'] (h' in columns 0..H, c' in H..2H), with
    /// c' = σ(a_f) ⊙ c_prev + σ(a_i) ⊙ tanh(a_g) and h' = σ(a_o) ⊙ tanh(c')
    LstmCell {
        gates: Tensor,
        c_prev: Tensor,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Unary(_, k) => k.name(),
            Op::Binary(_, _, k) => k.name(),
            Op::Where(..) => "where",
            Op::Sum { .. } => "sum",
            Op::Max { .. } => "max",
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Matmul(..) => "matmul",
            Op::MatmulT(..) => "matmul_t",
            Op::Reshape(_) => "reshape",
            Op::Permute(..) => "permute",
            Op::Narrow { .. } => "narrow",
            Op::Expand(_) => "expand",
            Op::Concat(..) => "concat",
            Op::Copy(_) => "contiguous",
            Op::Cast(_) => "cast",
            Op::ToDevice(_) => "to_device",
            Op::IndexSelect { .. } => "index_select",
            Op::IndexAdd { .. } => "index_add",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
            Op::Custom(_, c) => c.name(),
            Op::Conv { .. } => "conv2d",
            Op::ConvInputGrad { .. } => "conv2d_input_grad",
            Op::ConvWeightGrad { .. } => "conv2d_weight_grad",
            Op::LstmCell { .. } => "lstm_cell",
        }
    }

    /// The tensors this op read; the graph's edges.
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Unary(x, _)
            | Op::Sum { input: x, .. }
            | Op::Max { input: x, .. }
            | Op::Softmax { input: x, .. }
            | Op::LogSoftmax { input: x, .. }
            | Op::Reshape(x)
            | Op::Permute(x, _)
            | Op::Narrow { input: x, .. }
            | Op::Expand(x)
            | Op::Copy(x)
            | Op::Cast(x)
            | Op::ToDevice(x)
            | Op::IndexSelect { input: x, .. }
            | Op::IndexAdd { source: x, .. }
            | Op::Gather { input: x, .. }
            | Op::ScatterAdd { source: x, .. } => vec![x],
            Op::Binary(a, b, _) | Op::Matmul(a, b) | Op::MatmulT(a, b) => vec![a, b],
            Op::Conv { x, w, .. } => vec![x, w],
            Op::ConvInputGrad { dy, w, .. } => vec![dy, w],
            Op::ConvWeightGrad { x, dy, .. } => vec![x, dy],
            Op::LstmCell { gates, c_prev } => vec![gates, c_prev],
            Op::Where(m, a, b) => vec![m, a, b],
            Op::Concat(xs, _) | Op::Custom(xs, _) => xs.iter().collect(),
        }
    }

    /// The inputs as owned handles, for unlinking the graph when it is dropped (the op itself
    /// is dropped here, while the returned handles keep its inputs alive).
    pub(crate) fn into_inputs(self) -> Vec<Tensor> {
        self.inputs().into_iter().cloned().collect()
    }
}

/// A custom op's gradients for every input: those computed, and zeros (a broadcast scalar,
/// which costs nothing and which the engine ignores) for inputs that got none.
pub(crate) fn zeros_where_missing(
    grads: Vec<Option<Tensor>>,
    inputs: &[Tensor],
) -> crate::error::Result<Vec<Tensor>> {
    grads
        .into_iter()
        .zip(inputs)
        .map(|(g, t)| match g {
            Some(g) => Ok(g),
            None => Tensor::full_on(&[1], 0.0, t.dtype(), t.device())?
                .reshape(&[])?
                .expand(t.shape()),
        })
        .collect()
}
