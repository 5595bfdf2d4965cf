//! The proxy core fed arbitrary message sequences (split at `\0\0`;
//! `$BRANCH` is the branch of the last request it sent): no panic, no
//! request left unanswered once the timers ran.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    viaduct_proxy::fuzz::proxy(data);
});
