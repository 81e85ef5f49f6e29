//! Slot hashing: the eight-bytes-per-step CRC16 and the word-at-a-time hash-tag search agree
//! with their byte-by-byte definitions on arbitrary keys.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_cluster::fuzzing::slot(data));
