//! The host-memory budget (`autograd::memory`): what CPU tensors hold is counted while they
//! live, and an op whose output would go over the limit is an `OutOfMemory` error naming the op
//! and the bytes, made before anything is allocated. One test function: the budget is
//! process-wide, and tests in one binary run on parallel threads.

use autograd::nn::{Conv2d, Linear};
use autograd::{host_memory, set_host_memory_limit, Conv2dOptions, DType, Error, Rng, Tensor};

const MIB: usize = 1 << 20;

fn out_of_memory<T: std::fmt::Debug>(result: autograd::Result<T>, op: &str) -> String {
    match result {
        Err(e @ Error::OutOfMemory { .. }) => {
            let text = e.to_string();
            assert!(text.starts_with(&format!("{op}: out of memory")), "{text}");
            text
        }
        other => panic!("{op}: expected an out-of-memory error, got {other:?}"),
    }
}

#[test]
fn the_budget_counts_live_tensors_and_refuses_what_would_exceed_it() {
    // counting: a storage is charged once, views share its charge, the last drop gives it back
    let before = host_memory().current_bytes;
    let x = Tensor::try_zeros(&[1000], DType::F32).unwrap();
    assert_eq!(host_memory().current_bytes, before + 4000);
    let view = x.reshape(&[10, 100]).unwrap();
    assert_eq!(host_memory().current_bytes, before + 4000);
    let y = x.to_dtype(DType::F64).unwrap();
    assert_eq!(host_memory().current_bytes, before + 12000);
    assert!(host_memory().peak_bytes >= before + 12000);
    drop((x, y));
    assert_eq!(
        host_memory().current_bytes,
        before + 4000,
        "the view keeps it"
    );
    drop(view);
    assert_eq!(host_memory().current_bytes, before);

    // a limit 1 MiB above what is held
    let held = host_memory().current_bytes;
    assert_eq!(set_host_memory_limit(Some(held + MIB)), None);
    assert_eq!(host_memory().limit_bytes, Some(held + MIB));

    let text = out_of_memory(Tensor::try_zeros(&[512, 1024], DType::F32), "full");
    assert!(text.contains("2.0 MiB"), "{text}");
    assert!(text.contains("host-memory limit"), "{text}");

    // outputs far larger than their operands: an outer product, a broadcast, a convolution
    let col = Tensor::try_zeros(&[1024, 1], DType::F32).unwrap();
    let row = Tensor::try_zeros(&[1, 1024], DType::F32).unwrap();
    let text = out_of_memory(col.matmul(&row), "matmul");
    assert!(text.contains("1048576 f32 elements"), "{text}");
    out_of_memory(col.add(&row), "add");
    let mut rng = Rng::new(0);
    let options = Conv2dOptions::default().padding(1);
    let conv = Conv2d::new(1, 512, (3, 3), options, true, DType::F32, &mut rng).unwrap();
    let image = Tensor::try_zeros(&[1, 1, 28, 28], DType::F32).unwrap();
    out_of_memory(conv.forward(&image), "conv2d");
    // parameters a user sizes
    out_of_memory(Linear::new(1024, 1024, true, DType::F32, &mut rng), "full");
    // a count that does not fit in the address space is refused, not wrapped
    out_of_memory(Tensor::try_zeros(&[usize::MAX, 3], DType::F64), "full");

    // what fits still runs, and a refusal leaves nothing charged
    let made = (col.numel() + row.numel() + image.numel()) * 4 + conv_bytes(&conv);
    assert_eq!(host_memory().current_bytes, held + made);
    let small = col
        .narrow(0, 0, 8)
        .unwrap()
        .matmul(&row.narrow(1, 0, 8).unwrap());
    assert_eq!(small.unwrap().shape(), &[8, 8]);

    // without the limit the same ops run
    assert_eq!(set_host_memory_limit(None), Some(held + MIB));
    assert_eq!(col.matmul(&row).unwrap().shape(), &[1024, 1024]);
    assert!(Linear::new(1024, 1024, true, DType::F32, &mut rng).is_ok());
}

/// What a convolution's parameters hold.
fn conv_bytes(conv: &autograd::nn::Conv2d) -> usize {
    use autograd::nn::Module;
    conv.parameters().iter().map(|p| p.numel() * 4).sum()
}
