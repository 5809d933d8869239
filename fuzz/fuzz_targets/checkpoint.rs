#![no_main]
//! `cargo +nightly fuzz run checkpoint`: [`genzoo_fuzz::checkpoint`] on every input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = genzoo_fuzz::checkpoint(data);
});
