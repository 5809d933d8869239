//! Matrix multiplication: 2-D, and batched over leading axes that broadcast.

use crate::error::{Error, Result};
use crate::layout::broadcast_shapes;
use crate::op::Op;
use crate::profiler;
use crate::tensor::Tensor;

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
        profiler::label("matmul_t", || vec![sa.to_vec(), sw.to_vec()]);
        let storage = self
            .storage()
            .matmul(&la, &w.storage(), &lw, batch, [m, k, n])?;
        Ok(Tensor::from_op_result(
            storage,
            &shape,
            Op::MatmulT(self.clone(), w.clone()),
        ))
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
        profiler::label("matmul", || vec![sa.to_vec(), sb.to_vec()]);
        let storage = self
            .storage()
            .matmul(&la, &other.storage(), &lb, &batch, [m, k, n])?;
        Ok(Tensor::from_op_result(
            storage,
            &shape,
            Op::Matmul(self.clone(), other.clone()),
        ))
    }
}
