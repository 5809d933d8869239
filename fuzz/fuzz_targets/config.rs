#![no_main]
//! `cargo +nightly fuzz run config`: [`genzoo_fuzz::config`] on every input.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = genzoo_fuzz::config(data);
});
