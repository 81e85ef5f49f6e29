//! Differential tests against a live redis-server 7.0: key extraction against
//! `COMMAND GETKEYS`, and the whole table against `COMMAND LIST` / `COMMAND INFO`.

use slotgate_commands::{
    all, flag, key_flag, lookup, lookup_name, BeginSearch, Category, Command, FindKeys, KeyIndices,
    KeySpec, COMMAND_COUNT,
};
use slotgate_tests::probe::Reply;
use slotgate_tests::standalone::RedisServer;

/// Commands and subcommands newer than redis-server 7.0 that the table carries anyway
/// (gen/extra-commands.json).
const EXTRAS: [&str; 3] = ["client|no-touch", "client|setinfo", "waitaof"];

/// Command lines covering every key-spec shape; `''` is an empty argument. Every argument
/// that is a key is spelled distinctly, so key names identify positions.
const LINES: &str = include_str!("getkeys_lines.txt");

fn split(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace()
        .map(|a| {
            if a == "''" {
                Vec::new()
            } else {
                a.as_bytes().to_vec()
            }
        })
        .collect()
}

#[test]
fn key_indices_match_command_getkeys() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut checked = 0;
    let mut with_keys = 0;
    let mut out = KeyIndices::new();
    for line in LINES.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let args = split(line);
        let cmd = lookup(&args[..]).unwrap_or_else(|| panic!("lookup failed for {line:?}"));
        assert!(cmd.arity_ok(args.len()), "bad arity in test line {line:?}");
        let ours = cmd.key_indices(&args[..], &mut out).map(|()| {
            out.iter()
                .map(|i| String::from_utf8_lossy(&args[i as usize]).into_owned())
                .collect::<Vec<_>>()
        });
        let mut getkeys = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
        getkeys.extend(args.iter().cloned());
        match conn.call(&getkeys) {
            // Redis answers an empty array where its key finder gave up (bad numkeys):
            // then we must find no keys either, or report the error.
            Reply::Array(Some(keys)) if keys.is_empty() => {
                assert!(
                    ours.as_ref().map_or(true, Vec::is_empty),
                    "redis finds no keys in {line:?} but we found {ours:?}"
                );
            }
            Reply::Array(Some(keys)) => {
                let theirs: Vec<String> = keys.iter().map(Reply::string).collect();
                assert_eq!(ours, Ok(theirs), "keys of {line:?} ({})", cmd.name);
                with_keys += 1;
            }
            Reply::Error(e) => {
                assert!(
                    e.contains("Invalid arguments") || e.contains("no key arguments"),
                    "unexpected GETKEYS error for {line:?}: {e}"
                );
                assert!(
                    ours.as_ref().map_or(true, Vec::is_empty),
                    "redis finds no keys in {line:?} ({e}) but we found {ours:?}"
                );
            }
            other => panic!("unexpected GETKEYS reply for {line:?}: {other:?}"),
        }
        checked += 1;
    }
    assert!(checked >= 150, "only {checked} lines checked");
    assert!(with_keys >= 130, "only {with_keys} lines with keys");
}

#[test]
fn every_command_of_command_list_is_in_the_table() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let names = conn.call(&["COMMAND", "LIST"]).array();
    assert!(
        names.len() >= 200,
        "COMMAND LIST too short: {}",
        names.len()
    );
    for name in &names {
        let name = name.string();
        let cmd = match name.split_once('|') {
            None => lookup_name(name.as_bytes()),
            Some((top, sub)) => lookup(&[top, sub]).filter(|c| c.name.contains('|')),
        };
        assert!(
            cmd.is_some(),
            "{name} from COMMAND LIST is not in the table"
        );
    }

    let infos = conn.call(&["COMMAND", "INFO"]).array();
    let mut compared = 0;
    for info in infos {
        compared += compare_info(info, None);
    }
    let count = COMMAND_COUNT - EXTRAS.len();
    assert_eq!(
        compared, count,
        "server and table disagree on the command count"
    );
    assert_eq!(names.len(), count, "COMMAND LIST counts subcommands too");
    assert!(all().len() < COMMAND_COUNT);
}

/// Compares one `COMMAND INFO` entry (and its subcommands) with the table; returns how
/// many commands were compared.
fn compare_info(info: Reply, parent: Option<&'static Command>) -> usize {
    let fields = info.array();
    let name = fields[0].string().to_lowercase();
    let cmd = match parent {
        None => lookup_name(name.as_bytes()),
        Some(p) => p.subcommands.iter().find(|c| c.name == name),
    }
    .unwrap_or_else(|| panic!("{name} missing from the table"));
    assert_eq!(cmd.name, name);
    assert_eq!(cmd.arity as i64, fields[1].int(), "arity of {name}");
    let flags = fields[2]
        .clone()
        .array()
        .iter()
        .map(|f| command_flag(&f.string()))
        .sum();
    assert_eq!(cmd.flags, flags, "flags of {name}");
    assert_eq!(cmd.first_key as i64, fields[3].int(), "first key of {name}");
    assert_eq!(cmd.last_key as i64, fields[4].int(), "last key of {name}");
    assert_eq!(cmd.key_step as i64, fields[5].int(), "key step of {name}");
    let cats: u32 = fields[6]
        .clone()
        .array()
        .iter()
        .map(|c| {
            let c = c.string();
            Category::from_name(c.trim_start_matches('@'))
                .unwrap_or_else(|| panic!("unknown category {c}"))
                .bit()
        })
        .sum();
    assert_eq!(cmd.acl_categories, cats, "ACL categories of {name}");
    let specs: Vec<KeySpec> = fields[8]
        .clone()
        .array()
        .into_iter()
        .map(key_spec)
        .collect();
    assert_eq!(cmd.key_specs, &specs[..], "key specs of {name}");
    let subs = match &fields[9] {
        Reply::Array(Some(s)) => s.clone(),
        _ => Vec::new(),
    };
    let known = cmd.subcommands.iter().filter(|c| !EXTRAS.contains(&c.name));
    assert_eq!(known.count(), subs.len(), "subcommands of {name}");
    1 + subs
        .into_iter()
        .map(|s| compare_info(s, Some(cmd)))
        .sum::<usize>()
}

fn command_flag(name: &str) -> u32 {
    flag::from_name(name)
        .unwrap_or_else(|| panic!("redis reports flag {name:?} that the table does not know"))
}

/// A RESP2 map (flat `[k, v, k, v]` array) as pairs.
fn pairs(reply: Reply) -> Vec<(String, Reply)> {
    reply
        .array()
        .chunks(2)
        .map(|kv| (kv[0].string(), kv[1].clone()))
        .collect()
}

fn field(map: &[(String, Reply)], key: &str) -> Reply {
    map.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {map:?}"))
        .1
        .clone()
}

fn key_spec(reply: Reply) -> KeySpec {
    let map = pairs(reply);
    let flags = field(&map, "flags")
        .array()
        .iter()
        .map(|f| match f.string().as_str() {
            "RO" => key_flag::RO,
            "RW" => key_flag::RW,
            "OW" => key_flag::OW,
            "RM" => key_flag::RM,
            "access" => key_flag::ACCESS,
            "update" => key_flag::UPDATE,
            "insert" => key_flag::INSERT,
            "delete" => key_flag::DELETE,
            "not_key" => key_flag::NOT_KEY,
            "incomplete" => key_flag::INCOMPLETE,
            "variable_flags" => key_flag::VARIABLE_FLAGS,
            other => panic!("unknown key-spec flag {other}"),
        })
        .sum();
    let begin = pairs(field(&map, "begin_search"));
    let begin = match field(&begin, "type").string().as_str() {
        "index" => BeginSearch::Index(num(&pairs(field(&begin, "spec")), "index")),
        "keyword" => {
            let spec = pairs(field(&begin, "spec"));
            let keyword = field(&spec, "keyword").string();
            BeginSearch::Keyword {
                keyword: Box::leak(keyword.into_boxed_str()),
                start_from: num(&spec, "startfrom"),
            }
        }
        _ => BeginSearch::Unknown,
    };
    let find = pairs(field(&map, "find_keys"));
    let find = match field(&find, "type").string().as_str() {
        "range" => {
            let spec = pairs(field(&find, "spec"));
            FindKeys::Range {
                last_key: num(&spec, "lastkey"),
                step: num(&spec, "keystep"),
                limit: num(&spec, "limit"),
            }
        }
        "keynum" => {
            let spec = pairs(field(&find, "spec"));
            FindKeys::KeyNum {
                keynum_idx: num(&spec, "keynumidx"),
                first_key: num(&spec, "firstkey"),
                step: num(&spec, "keystep"),
            }
        }
        _ => FindKeys::Unknown,
    };
    KeySpec { begin, find, flags }
}

fn num(map: &[(String, Reply)], key: &str) -> i16 {
    i16::try_from(field(map, key).int()).expect("fits i16")
}

/// Every command with key specs, with pseudo-random argument lists built from numbers and
/// the command's own keywords, compared with `COMMAND GETKEYS`: finds shapes a hand-written
/// list misses (keywords in odd places, numkeys pointing past the end, ...).
#[test]
fn random_lines_match_command_getkeys() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut rng = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut out = KeyIndices::new();
    let mut compared = 0;
    let leaves = all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
        .filter(|c| !c.key_specs.is_empty() && !c.is_container());
    for cmd in leaves {
        let mut vocab: Vec<String> = [
            "0", "1", "2", "3", "4", "-1", "x", "STORE", "KEYS", "STREAMS", "GROUP", "COUNT",
            "BLOCK", "LIMIT", "BY", "GET",
        ]
        .map(String::from)
        .into();
        for spec in cmd.key_specs {
            if let BeginSearch::Keyword { keyword, .. } = spec.begin {
                vocab.push(keyword.to_string());
                vocab.push(keyword.to_lowercase());
            }
        }
        let prefix: Vec<String> = cmd.name.split('|').map(String::from).collect();
        let min = cmd.arity.unsigned_abs() as usize;
        for round in 0..80 {
            let argc = if cmd.arity > 0 { min } else { min + round % 8 };
            let mut args = prefix.clone();
            while args.len() < argc {
                // Unique words stand for keys; vocabulary words steer the key specs.
                if next(3) == 0 {
                    args.push(format!("w{}", args.len()));
                } else {
                    args.push(vocab[next(vocab.len())].clone());
                }
            }
            let ours = cmd.key_indices(&args[..], &mut out).map(|()| {
                out.iter()
                    .map(|i| args[i as usize].clone())
                    .collect::<Vec<_>>()
            });
            let mut getkeys = vec!["COMMAND".to_string(), "GETKEYS".to_string()];
            getkeys.extend(args.iter().cloned());
            match conn.call(&getkeys) {
                Reply::Array(Some(keys)) if !keys.is_empty() => {
                    let theirs: Vec<String> = keys.iter().map(Reply::string).collect();
                    assert_eq!(ours, Ok(theirs), "keys of {args:?}");
                }
                Reply::Array(Some(_)) | Reply::Error(_) => assert!(
                    ours.as_ref().map_or(true, Vec::is_empty),
                    "redis finds no keys in {args:?} but we found {ours:?}"
                ),
                other => panic!("unexpected GETKEYS reply for {args:?}: {other:?}"),
            }
            compared += 1;
        }
    }
    assert!(compared > 15_000, "only {compared} lines compared");
}
