//! The fuzz targets' seed corpora (`fuzz/corpus/<target>/`) through the same entry points the
//! targets call, so the corpora and the `fuzzing` module stay exercised without nightly.

use std::path::Path;

fn run_corpus(target: &str, entry: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut seen = 0;
    for file in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = file.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        entry(&data);
        seen += 1;
    }
    assert!(seen >= 10, "{target}: only {seen} seeds");
}

#[test]
fn request_decoder_corpus() {
    run_corpus("request_decoder", slotgate_resp::fuzzing::request_decoder);
}

#[test]
fn reply_scanner_corpus() {
    run_corpus("reply_scanner", slotgate_resp::fuzzing::reply_scanner);
}
