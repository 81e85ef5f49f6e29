//! Command classification: lookup, arity, key extraction and blocking detection on arbitrary
//! NUL-separated argument lists never panic and never yield an out-of-range key index.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_commands::fuzzing::classify(data));
