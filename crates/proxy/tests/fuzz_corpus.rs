//! The `request_path` fuzz target's kept corpus (`fuzz/corpus/request_path/`) through the
//! entry point the target calls, so the corpus and the fuzzing world stay exercised without
//! nightly: every seed runs the whole request path against the scripted fake nodes.

use std::path::Path;

#[test]
fn request_path_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/request_path");
    let mut seen = 0;
    for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        slotgate_proxy::fuzzing::request_path(&data);
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} seeds");
}
