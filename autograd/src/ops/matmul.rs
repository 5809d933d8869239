//! Matrix multiplication: 2-D, and batched over leading axes that broadcast.

use crate::dtype::{DType, Element};
use crate::error::{Error, Result};
use crate::layout::{broadcast_shapes, Layout};
use crate::op::Op;
use crate::tensor::Tensor;
use kernels::cpu::matmul::{batched_matmul, matmul, MatRef};

/// Buffer offsets of each matrix of a batched operand, in row-major batch order.
fn batch_offsets(layout: &Layout, batch_shape: &[usize]) -> Vec<usize> {
    let nb = batch_shape.len();
    let mut offsets = Vec::with_capacity(batch_shape.iter().product());
    kernels::strided::for_each_row(
        &[batch_shape, &[1]].concat(),
        &[&[&layout.strides[..nb], &[0][..]].concat()],
        &[layout.offset],
        |offs, _, _| offsets.push(offs[0]),
    );
    offsets
}

#[allow(clippy::too_many_arguments)]
fn compute<T: Element>(
    a: &Tensor,
    la: &Layout,
    b: &Tensor,
    lb: &Layout,
    batch: &[usize],
    m: usize,
    k: usize,
    n: usize,
) -> Vec<T> {
    let nb = batch.len();
    let count: usize = batch.iter().product();
    let mut out = vec![T::ZERO; count * m * n];
    if count == 0 {
        return out;
    }
    let (sa, sb) = (a.storage(), b.storage());
    let ar = MatRef {
        data: sa.as_slice::<T>(),
        offset: la.offset,
        row_stride: la.strides[nb],
        col_stride: la.strides[nb + 1],
    };
    let br = MatRef {
        data: sb.as_slice::<T>(),
        offset: lb.offset,
        row_stride: lb.strides[nb],
        col_stride: lb.strides[nb + 1],
    };
    if nb == 0 {
        matmul(m, k, n, ar, br, &mut out);
    } else {
        batched_matmul(
            m,
            k,
            n,
            ar,
            &batch_offsets(la, batch),
            br,
            &batch_offsets(lb, batch),
            &mut out,
        );
    }
    out
}

impl Tensor {
    /// [..., m, k] x [n, k]ᵀ -> [..., m, n]: `self.matmul(&w.t())` for a 2-D `w`, as a Linear
    /// layer computes it. The same product, but the graph holds `w` itself rather than a
    /// transposed view of it, and w's gradient comes out in w's own layout.
    pub fn matmul_t(&self, w: &Tensor) -> Result<Tensor> {
        self.same_dtype("matmul_t", w)?;
        let (sa, sw) = (self.shape(), w.shape());
        if sa.len() < 2 || sw.len() != 2 || sa[sa.len() - 1] != sw[1] {
            return Err(Error::shape(
                "matmul_t",
                format!("needs [..., m, k] and a 2-D [n, k], got {sa:?} and {sw:?}"),
            ));
        }
        let (m, k, n) = (sa[sa.len() - 2], sw[1], sw[0]);
        let batch = &sa[..sa.len() - 2];
        let la = self.layout().clone();
        let lw = w
            .layout()
            .permute("matmul_t", &[1, 0])?
            .expand(&[batch, &[k, n]].concat())?;
        let shape = [batch, &[m, n]].concat();
        let op = Op::MatmulT(self.clone(), w.clone());
        Ok(match self.dtype() {
            DType::F32 => Tensor::from_op(
                compute::<f32>(self, &la, w, &lw, batch, m, k, n),
                &shape,
                op,
            ),
            DType::F64 => Tensor::from_op(
                compute::<f64>(self, &la, w, &lw, batch, m, k, n),
                &shape,
                op,
            ),
        })
    }

    /// [..., m, k] x [..., k, n] -> [..., m, n]; leading (batch) axes broadcast.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.same_dtype("matmul", other)?;
        let (sa, sb) = (self.shape(), other.shape());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(Error::shape(
                "matmul",
                format!("operands need at least 2 axes, got {sa:?} and {sb:?}"),
            ));
        }
        let (m, k) = (sa[sa.len() - 2], sa[sa.len() - 1]);
        let (k2, n) = (sb[sb.len() - 2], sb[sb.len() - 1]);
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                format!("inner dimensions differ ({sa:?} vs {sb:?})"),
            ));
        }
        let batch = broadcast_shapes("matmul", &sa[..sa.len() - 2], &sb[..sb.len() - 2])?;
        let la = self.layout().expand(&[&batch[..], &[m, k]].concat())?;
        let lb = other.layout().expand(&[&batch[..], &[k, n]].concat())?;
        let shape = [&batch[..], &[m, n]].concat();
        let op = Op::Matmul(self.clone(), other.clone());
        Ok(match self.dtype() {
            DType::F32 => Tensor::from_op(
                compute::<f32>(self, &la, other, &lb, &batch, m, k, n),
                &shape,
                op,
            ),
            DType::F64 => Tensor::from_op(
                compute::<f64>(self, &la, other, &lb, &batch, m, k, n),
                &shape,
                op,
            ),
        })
    }
}
