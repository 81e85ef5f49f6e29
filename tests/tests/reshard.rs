//! Resharding 1,000 slots while a writer and a reader run through slotgate: no client sees
//! an error and every acknowledged write reads back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slotgate_tests::{free_port, slotgate_config, ClusterOptions, RedisCluster, Slotgate};

#[test]
fn reshard_under_load_is_invisible() {
    let cluster = RedisCluster::start(ClusterOptions::default());
    let proxy = Slotgate::spawn(&slotgate_config(&cluster.seeds(), free_port()));
    let url = proxy.url();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));

    let writer = {
        let (stop, acked, errors, url) = (stop.clone(), acked.clone(), errors.clone(), url.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (k, v) = (format!("rs:{i}"), format!("value-{i}-{}", i * 31));
                match redis::cmd("SET").arg(&k).arg(&v).query::<()>(&mut c) {
                    Ok(()) => acked.lock().unwrap().push((k, v)),
                    Err(e) => errors.lock().unwrap().push(format!("SET {k}: {e}")),
                }
                i += 1;
            }
        })
    };
    let reader = {
        let (stop, acked, errors, url) = (stop.clone(), acked.clone(), errors.clone(), url.clone());
        std::thread::spawn(move || {
            let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let pick = {
                    let a = acked.lock().unwrap();
                    if a.is_empty() {
                        None
                    } else {
                        Some(a[(n * 7919) % a.len()].clone())
                    }
                };
                n += 1;
                let Some((k, v)) = pick else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                match redis::cmd("GET").arg(&k).query::<Option<String>>(&mut c) {
                    Ok(Some(got)) if got == v => {}
                    Ok(other) => errors
                        .lock()
                        .unwrap()
                        .push(format!("GET {k}: {other:?}, want {v}")),
                    Err(e) => errors.lock().unwrap().push(format!("GET {k}: {e}")),
                }
            }
            n
        })
    };

    std::thread::sleep(Duration::from_millis(300));
    let primaries = cluster.primaries();
    cluster.reshard(primaries[0], primaries[1], 1000);
    cluster.reshard(primaries[2], primaries[0], 500);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let reads = reader.join().unwrap();

    let errors = errors.lock().unwrap();
    assert!(
        errors.is_empty(),
        "{} client-visible errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let acked = acked.lock().unwrap();
    assert!(
        acked.len() > 1000,
        "too little load: {} writes",
        acked.len()
    );
    assert!(reads > 1000, "too little load: {reads} reads");
    let mut c = redis::Client::open(url).unwrap().get_connection().unwrap();
    for chunk in acked.chunks(1000) {
        let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET").arg(&keys).query(&mut c).unwrap();
        for ((k, v), g) in chunk.iter().zip(got) {
            assert_eq!(
                g.as_deref(),
                Some(v.as_str()),
                "acknowledged write of {k} lost"
            );
        }
    }
    // The proxy learned the new owners (MOVED patches or refresh), checked via the cluster.
    let moved_slot = (0..16384u16).find(|&s| cluster.node_for_slot(s) == primaries[1] && s < 5461);
    assert!(moved_slot.is_some(), "reshard moved nothing?");
}
