//! Request decoder: no panic on any input, and the same requests whatever the chunking.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_resp::fuzzing::request_decoder(data));
