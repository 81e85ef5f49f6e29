//! redis-cli through slotgate: commands fed on stdin as a user would type them, and `--pipe`
//! mass insertion of 100,000 keys.

use std::io::Write;
use std::process::{Command, Stdio};

use slotgate_tests::{shared_proxy, unique_key_prefix, Slotgate};

fn proxy() -> &'static Slotgate {
    shared_proxy()
}

fn redis_cli(args: &[&str], stdin: &[u8]) -> (String, String, bool) {
    let mut child = Command::new("redis-cli")
        .arg("-p")
        .arg(proxy().port().to_string())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli not found: apt-get install redis-tools");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

#[test]
fn typed_commands() {
    let p = unique_key_prefix("cli");
    let script = format!(
        "PING\nSET {p}a hello\nGET {p}a\nMSET {p}b 1 {p}c 2\nMGET {p}a {p}b {p}c {p}none\nINCR {p}b\nDEL {p}a {p}b {p}c\nnosuchcmd x\nECHO \"two words\"\n"
    );
    let (out, err, ok) = redis_cli(&[], script.as_bytes());
    assert!(ok, "redis-cli failed: {err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            "PONG",
            "OK",
            "hello",
            "OK",
            "hello",
            "1",
            "2",
            "",
            "2",
            "3",
            "ERR unknown command 'nosuchcmd', with args beginning with: 'x' ",
            "", // redis-cli prints a blank line after an error, as it does against Redis
            "two words"
        ],
        "stdout: {out}\nstderr: {err}"
    );
}

#[test]
fn pipe_mode_loads_100000_keys() {
    let p = unique_key_prefix("pipe");
    let mut data = Vec::with_capacity(100_000 * 60);
    for i in 0..100_000 {
        let k = format!("{p}{i}");
        let v = format!("value-{i}");
        data.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .as_bytes(),
        );
    }
    let (out, err, ok) = redis_cli(&["--pipe"], &data);
    assert!(ok, "redis-cli --pipe failed: {out} {err}");
    assert!(out.contains("errors: 0, replies: 100000"), "{out}");
    // Every key is there: EXISTS is split by slot and summed.
    let mut c = redis::Client::open(proxy().url())
        .unwrap()
        .get_connection()
        .unwrap();
    let mut total = 0i64;
    for chunk in (0..100_000).collect::<Vec<_>>().chunks(5000) {
        let keys: Vec<String> = chunk.iter().map(|i| format!("{p}{i}")).collect();
        let n: i64 = redis::cmd("EXISTS").arg(&keys).query(&mut c).unwrap();
        total += n;
    }
    assert_eq!(total, 100_000);
    let v: String = redis::cmd("GET")
        .arg(format!("{p}99999"))
        .query(&mut c)
        .unwrap();
    assert_eq!(v, "value-99999");
}
