//! The whole request path: command lines from the real command table with arbitrary
//! arguments, routed and answered through slotgate's families, entries, ops and upstream
//! connections against two scripted fake nodes (MOVED, ASK, TRYAGAIN, errors, nested
//! replies, closed connections). Nothing panics, every request gets exactly one reply in
//! order, and every frame sent to a node is a well-formed command.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| slotgate_proxy::fuzzing::request_path(data));
