//! The ops the graph records. Each variant holds its inputs and whatever its backward rule needs;
//! the rules themselves live together in `backward.rs`.

use crate::error::Result;
use crate::tensor::Tensor;
use kernels::desc::{BinaryKind, ConvGeometry, UnaryKind};
use std::sync::Arc;

/// Index lists for gather/scatter: `data` holds indices in row-major order over `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct Indices {
    /// The indices, row-major over `shape`.
    pub data: Arc<[usize]>,
    /// The shape of the index tensor.
    pub shape: Vec<usize>,
}

/// A user-defined op: its backward maps the output's gradient to one gradient per input.
/// The test suite uses it to show that the gradient checker catches a wrong backward.
pub trait CustomBackward: Send + Sync {
    /// The op's name in graph exports ([`crate::dot`]) and `Debug` output.
    fn name(&self) -> &'static str;
    /// The gradient of each input, in the order of `inputs`, given the output and its gradient `grad`.
    fn backward(&self, inputs: &[Tensor], output: &Tensor, grad: &Tensor) -> Result<Vec<Tensor>>;
}

/// A recorded op: what made a tensor, with the inputs and constants its backward rule needs.
/// A tensor made by an op holds it ([`Tensor::op`]) while some input requires grad and grad
/// mode is on; the engine walks these to differentiate.
#[derive(Clone)]
pub enum Op {
    /// an elementwise function of one tensor
    Unary(Tensor, UnaryKind),
    /// add, sub, mul, div, maximum, minimum with broadcasting
    Binary(Tensor, Tensor, BinaryKind),
    /// where(mask, a, b): mask is a constant 0/1 tensor
    Where(Tensor, Tensor, Tensor),
    /// sum over sorted `axes`, keeping them as size 1 when `keepdim`
    Sum {
        /// The reduced tensor.
        input: Tensor,
        /// The axes summed over, sorted.
        axes: Vec<usize>,
        /// Whether the summed axes stay as size 1.
        keepdim: bool,
    },
    /// max over sorted `axes`
    Max {
        /// The reduced tensor.
        input: Tensor,
        /// The axes reduced over, sorted.
        axes: Vec<usize>,
        /// Whether the reduced axes stay as size 1.
        keepdim: bool,
    },
    /// softmax along `axis`
    Softmax {
        /// The tensor normalised.
        input: Tensor,
        /// The axis normalised along.
        axis: usize,
    },
    /// log(softmax) along `axis`
    LogSoftmax {
        /// The tensor normalised.
        input: Tensor,
        /// The axis normalised along.
        axis: usize,
    },
    /// matrix product [..., m, k] x [..., k, n], leading axes broadcast
    Matmul(Tensor, Tensor),
    /// a · wᵀ for a 2-D w (a Linear layer), reading w in place: no transposed view of the
    /// weight is kept in the graph, so the optimizer can update it without a copy
    MatmulT(Tensor, Tensor),
    /// a new shape over the same elements (also unsqueeze and squeeze)
    Reshape(Tensor),
    /// axes reordered: output axis i is input axis `perm[i]`
    Permute(Tensor, Vec<usize>),
    /// a slice `start..start + len` along `axis` (len: the output's size there), a view
    Narrow {
        /// The tensor sliced.
        input: Tensor,
        /// The axis sliced.
        axis: usize,
        /// The first index kept.
        start: usize,
    },
    /// a broadcast to the output's shape (stride 0 on the stretched axes), a view
    Expand(Tensor),
    /// tensors joined along an axis
    Concat(Vec<Tensor>, usize),
    /// A contiguous copy of a strided view
    Copy(Tensor),
    /// the same values in the output's dtype
    Cast(Tensor),
    /// The same values moved to another device; the gradient moves back.
    ToDevice(Tensor),
    /// slices of `input` along `axis` picked by `indices`
    IndexSelect {
        /// The tensor read.
        input: Tensor,
        /// The axis indexed.
        axis: usize,
        /// The positions picked, in output order.
        indices: Arc<[usize]>,
    },
    /// zeros of size `size` along `axis`, with `source` slices added at `indices`
    IndexAdd {
        /// The slices added.
        source: Tensor,
        /// The axis indexed.
        axis: usize,
        /// Where each slice of `source` is added.
        indices: Arc<[usize]>,
        /// The output's size along `axis`.
        size: usize,
    },
    /// elements of `input` along `axis` at positions given per element by `index`
    Gather {
        /// The tensor read.
        input: Tensor,
        /// The axis indexed.
        axis: usize,
        /// The position along `axis` of each output element.
        index: Indices,
    },
    /// zeros of size `size` along `axis`, with each element of `source` added at its `index`
    ScatterAdd {
        /// The elements added.
        source: Tensor,
        /// The axis indexed.
        axis: usize,
        /// Where along `axis` each element of `source` is added.
        index: Indices,
        /// The output's size along `axis`.
        size: usize,
    },
    /// a user-defined op (see [`Tensor::from_custom_op`]): its inputs and backward rule
    Custom(Vec<Tensor>, Arc<dyn CustomBackward>),
    /// y = conv(x, w) over the geometry's active taps (all, or a PixelCNN mask's)
    Conv {
        /// The input [n, c_in, h, w].
        x: Tensor,
        /// The weight [c_out, c_in / groups, kh, kw].
        w: Tensor,
        /// Shapes, stride, padding, dilation, groups and active taps.
        geo: Arc<ConvGeometry>,
    },
    /// dx = convᵀ(dy, w): conv's input gradient, and conv_transpose2d's forward
    ConvInputGrad {
        /// The output's gradient (or conv_transpose2d's input) [n, c_out, ho, wo].
        dy: Tensor,
        /// The weight [c_out, c_in / groups, kh, kw].
        w: Tensor,
        /// Shapes, stride, padding, dilation, groups and active taps.
        geo: Arc<ConvGeometry>,
    },
    /// dw = Σ dy · cols(x)ᵀ: conv's weight gradient (full weight shape, zeros at masked taps)
    ConvWeightGrad {
        /// The convolution's input [n, c_in, h, w].
        x: Tensor,
        /// The output's gradient [n, c_out, ho, wo].
        dy: Tensor,
        /// Shapes, stride, padding, dilation, groups and active taps.
        geo: Arc<ConvGeometry>,
    },
    /// The LSTM cell's pointwise part (`ops/lstm.rs`): gates [B, 4H] (i, f, g, o) and c_prev
    /// [B, H] give one output [B, 2H] = [h' | c'] (h' in columns 0..H, c' in H..2H), with
    /// c' = σ(a_f) ⊙ c_prev + σ(a_i) ⊙ tanh(a_g) and h' = σ(a_o) ⊙ tanh(c')
    LstmCell {
        /// The pre-activation gates [B, 4H].
        gates: Tensor,
        /// The previous cell state [B, H].
        c_prev: Tensor,
    },
}

impl Op {
    /// The op's name, as graph exports and `Debug` output show it.
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
