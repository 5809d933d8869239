#![no_main]
//! `cargo +nightly fuzz run idx_raw`: [`genzoo_fuzz::idx_raw`] on every input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = genzoo_fuzz::idx_raw(data);
});
