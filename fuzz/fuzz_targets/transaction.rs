//! The four RFC 3261 §17 transaction machines fed arbitrary event sequences
//! with a fake clock: no panic, always Terminated, reported once.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    viaduct_proxy::fuzz::transactions(data);
});
