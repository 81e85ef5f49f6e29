//! Reply scanner: no panic on any input, the same replies whatever the chunking, and every
//! reply accepted by the value parser with the same length.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_resp::fuzzing::reply_scanner(data));
