//! Command classification: lookup, arity, key extraction and blocking detection on arbitrary
//! command lines (`\n`-separated, arguments NUL-separated) never panic and never yield an
//! out-of-range key index; the per-connection lookup cache and the one-key routing shortcut
//! agree with the lookups and key extraction they stand in for.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_commands::fuzzing::classify(data));
