//! Client load for fault tests: a writer doing `SET` with unique values and a reader doing
//! `GET` of acknowledged keys, through slotgate, for the whole scenario. Afterwards every
//! acknowledged write can be read back ([`LoadReport::lost_writes`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One client-visible error.
#[derive(Debug, Clone)]
pub struct LoadError {
    /// When the client got it.
    pub at: Instant,
    /// The key of the command.
    pub key: String,
    /// `SET` or `GET`.
    pub op: &'static str,
    /// The error as redis-rs reports it.
    pub message: String,
}

/// A successful command (for error-window measurements).
#[derive(Debug, Clone)]
pub struct LoadSuccess {
    /// When the reply arrived.
    pub at: Instant,
    /// The key.
    pub key: String,
}

#[derive(Default)]
struct Shared {
    acked: Vec<(String, String)>,
    errors: Vec<LoadError>,
    successes: Vec<LoadSuccess>,
    reads: usize,
}

/// Writer + reader threads running against a Redis URL until [`Load::stop`].
pub struct Load {
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

/// What the load saw.
#[derive(Debug)]
pub struct LoadReport {
    /// Writes that got `+OK`, with their values.
    pub acked: Vec<(String, String)>,
    /// Every client-visible error, in time order per thread.
    pub errors: Vec<LoadError>,
    /// Every successful command with its time.
    pub successes: Vec<LoadSuccess>,
    /// Reads done.
    pub reads: usize,
}

// === impl Load ===

impl Load {
    /// Start a writer and a reader on `url`; keys are `PREFIX<n>`.
    pub fn start(url: &str, prefix: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(Mutex::new(Shared::default()));
        let connect = |url: &str| {
            let client = redis::Client::open(url).expect("valid url");
            client
                .get_connection_with_timeout(Duration::from_secs(5))
                .expect("connect through slotgate")
        };
        let writer = {
            let (stop, shared, mut conn, prefix) = (
                stop.clone(),
                shared.clone(),
                connect(url),
                prefix.to_string(),
            );
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (k, v) = (
                        format!("{prefix}{i}"),
                        format!("v{i}-{}", i.wrapping_mul(2654435761)),
                    );
                    let result = redis::cmd("SET").arg(&k).arg(&v).query::<()>(&mut conn);
                    let mut s = shared.lock().unwrap();
                    match result {
                        Ok(()) => {
                            s.successes.push(LoadSuccess {
                                at: Instant::now(),
                                key: k.clone(),
                            });
                            s.acked.push((k, v));
                        }
                        Err(e) => s.errors.push(LoadError {
                            at: Instant::now(),
                            key: k,
                            op: "SET",
                            message: e.to_string(),
                        }),
                    }
                    i += 1;
                }
            })
        };
        let reader = {
            let (stop, shared, mut conn) = (stop.clone(), shared.clone(), connect(url));
            std::thread::spawn(move || {
                let mut n = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let pick = {
                        let s = shared.lock().unwrap();
                        (!s.acked.is_empty()).then(|| s.acked[(n * 7919) % s.acked.len()].clone())
                    };
                    let Some((k, v)) = pick else {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    };
                    let result = redis::cmd("GET").arg(&k).query::<Option<String>>(&mut conn);
                    let mut s = shared.lock().unwrap();
                    s.reads += 1;
                    match result {
                        Ok(Some(got)) if got == v => s.successes.push(LoadSuccess {
                            at: Instant::now(),
                            key: k,
                        }),
                        Ok(other) => s.errors.push(LoadError {
                            at: Instant::now(),
                            key: k,
                            op: "GET",
                            message: format!("read {other:?}, want {v:?}"),
                        }),
                        Err(e) => s.errors.push(LoadError {
                            at: Instant::now(),
                            key: k,
                            op: "GET",
                            message: e.to_string(),
                        }),
                    }
                }
            })
        };
        Load {
            stop,
            shared,
            threads: vec![writer, reader],
        }
    }

    /// Writes acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.shared.lock().unwrap().acked.len()
    }

    /// Stop both threads and return what they saw.
    pub fn stop(self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread panicked");
        }
        let s = std::mem::take(&mut *self.shared.lock().unwrap());
        LoadReport {
            acked: s.acked,
            errors: s.errors,
            successes: s.successes,
            reads: s.reads,
        }
    }
}

// === impl LoadReport ===

impl LoadReport {
    /// Acknowledged writes that do not read back with their value through `url`.
    pub fn lost_writes(&self, url: &str) -> Vec<String> {
        let mut conn = redis::Client::open(url).unwrap().get_connection().unwrap();
        let mut lost = Vec::new();
        for chunk in self.acked.chunks(500) {
            let keys: Vec<&String> = chunk.iter().map(|(k, _)| k).collect();
            let got: Vec<Option<String>> = redis::cmd("MGET")
                .arg(&keys)
                .query(&mut conn)
                .expect("MGET through slotgate");
            for ((k, v), g) in chunk.iter().zip(got) {
                if g.as_deref() != Some(v.as_str()) {
                    lost.push(format!("{k}: {g:?} != {v:?}"));
                }
            }
        }
        lost
    }

    /// Assert that every acknowledged write reads back with its value through `url`.
    ///
    /// # Panics
    /// Naming the first lost writes.
    pub fn assert_no_lost_writes(&self, url: &str) {
        let lost = self.lost_writes(url);
        assert!(
            lost.is_empty(),
            "{} acknowledged writes lost: {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }

    /// Assert that the client saw no error at all.
    ///
    /// # Panics
    /// Naming the first errors.
    pub fn assert_no_errors(&self) {
        assert!(
            self.errors.is_empty(),
            "{} client-visible errors:\n{}",
            self.errors.len(),
            self.first_errors(5)
        );
    }

    /// A short description of the first errors, for assertion messages.
    pub fn first_errors(&self, n: usize) -> String {
        self.errors
            .iter()
            .take(n)
            .map(|e| format!("{} {}: {}", e.op, e.key, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The usual fault-test set-up: a fresh cluster, slotgate in front of it, and a [`Load`]
/// (keys under `prefix`) that has already had 200 writes acknowledged. slotgate has an admin
/// port ([`crate::Slotgate::scrape`]).
///
/// # Panics
/// When any of them fails to start or the load makes no progress within 10 s.
pub fn cluster_under_load(
    options: crate::ClusterOptions,
    prefix: &str,
) -> (crate::RedisCluster, crate::Slotgate, Load) {
    let cluster = crate::RedisCluster::start(options);
    let proxy = crate::ProxyConfig::new(&cluster.seeds()).admin().spawn();
    let load = Load::start(&proxy.url(), prefix);
    crate::assert_eventually!(
        load.acked_count() > 200,
        Duration::from_secs(10),
        "no writes acknowledged through slotgate"
    );
    (cluster, proxy, load)
}
