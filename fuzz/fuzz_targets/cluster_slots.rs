//! CLUSTER SLOTS parsing and MOVED/ASK parsing never panic on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_cluster::fuzzing::cluster_slots(data));
