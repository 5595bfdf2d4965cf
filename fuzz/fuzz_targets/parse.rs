//! The parser: arbitrary bytes as a datagram and as a stream message; what
//! parses and validates must survive forwarding with the same fields.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    viaduct_sip::fuzz::parse_and_forward(data);
});
