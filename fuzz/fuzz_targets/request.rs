//! Fuzzes the request-decoding path (`strata_api::fuzz::request`): JSON decoding,
//! admission and the three patch types, for every resource. Run with
//! `cargo +nightly fuzz run request` from this directory (cargo install cargo-fuzz).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_api::fuzz::request(data);
});
