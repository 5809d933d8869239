//! Nothing a user passes to the public ops may panic: random shapes and arguments, including
//! mismatched, empty and out-of-range ones, must give Ok or a descriptive Err.

use autograd::{Conv2dOptions, ConvTranspose2dOptions, DType, Indices, Mask, Tensor};
use proptest::prelude::*;

fn any_shape() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..4usize, 0..5)
}

fn tensor(shape: &[usize]) -> Tensor {
    Tensor::full(shape, 0.5, DType::F32)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn shape_and_index_ops_never_panic(a in any_shape(), b in any_shape(), axis in -5isize..5, n in 0..6usize, idx in prop::collection::vec(0..6usize, 0..5)) {
        let (x, y) = (tensor(&a), tensor(&b));
        let _ = x.add(&y);
        let _ = x.matmul(&y);
        let _ = x.reshape(&b);
        let _ = x.sum(&[axis], true);
        let _ = x.max(&[axis], false);
        let _ = x.mean(&[axis, axis], false);
        let _ = x.logsumexp(&[axis], false);
        let _ = x.softmax(axis);
        let _ = x.log_softmax(axis);
        let _ = x.transpose(axis, -1);
        let _ = x.narrow(axis, n, 2);
        let _ = x.expand(&b);
        let _ = x.squeeze(axis);
        let _ = x.unsqueeze(n);
        let _ = x.flatten_from(n);
        let _ = x.permute(&idx);
        let _ = Tensor::concat(&[x.clone(), y.clone()], axis);
        let _ = Tensor::stack(&[x.clone(), y.clone()], n);
        let _ = x.index_select(axis, &idx);
        let _ = x.index_add(axis, &idx, n);
        if let Ok(i) = Indices::new(idx.clone(), &b) {
            let _ = x.gather(axis, &i);
            let _ = x.scatter_add(axis, &i, n);
        }
        let _ = Tensor::one_hot(&idx, n, DType::F32);
        let _ = Tensor::where_cond(&x, &y, &x);
        let _ = x.item();
        let _ = x.dim(axis);
        let _ = x.clamp(1.0, 0.0);
        let _ = x.to_vec::<f64>();
        let _ = x.add(&Tensor::zeros(&a, DType::F64));
    }

    #[test]
    fn convolutions_never_panic(x in prop::collection::vec(0..6usize, 4), w in prop::collection::vec(0..6usize, 4), s in 0..3usize, p in 0..4usize, d in 0..3usize, g in 0..3usize, op in 0..3usize) {
        let (x, w) = (tensor(&x), tensor(&w));
        let _ = x.conv2d(&w, None, &Conv2dOptions::default().stride(s).padding(p).dilation(d).groups(g));
        let _ = x.masked_conv2d(&w, None, Mask::A, &Conv2dOptions::default().stride(s).padding(p).dilation(d).groups(g));
        let _ = x.conv_transpose2d(&w, None, &ConvTranspose2dOptions::default().stride(s).padding(p).dilation(d).groups(g).output_padding(op));
        let _ = x.conv2d(&w, Some(&tensor(&[3])), &Conv2dOptions::default());
    }
}
