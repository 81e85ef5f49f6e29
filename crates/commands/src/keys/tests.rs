use crate::{lookup, KeyError, KeyIndices};

/// Splits `line` on spaces (`''` stands for an empty argument) and extracts keys.
fn keys(line: &str) -> Result<Vec<u32>, KeyError> {
    let args: Vec<&[u8]> = line
        .split(' ')
        .map(|a| if a == "''" { &b""[..] } else { a.as_bytes() })
        .collect();
    let cmd = lookup(&args[..]).unwrap_or_else(|| panic!("unknown command in {line:?}"));
    let mut out = KeyIndices::new();
    cmd.key_indices(&args[..], &mut out)?;
    Ok(out.as_slice().to_vec())
}

fn routing(line: &str) -> Vec<u32> {
    let args: Vec<&str> = line.split(' ').collect();
    let mut out = KeyIndices::new();
    lookup(&args[..])
        .unwrap()
        .routing_indices(&args[..], &mut out)
        .unwrap();
    out.as_slice().to_vec()
}

#[test]
fn fixed_positions() {
    assert_eq!(keys("GET k"), Ok(vec![1]));
    assert_eq!(keys("set k v EX 10 GET"), Ok(vec![1]));
    assert_eq!(keys("SMOVE a b m"), Ok(vec![1, 2]));
    assert_eq!(keys("RENAME a b"), Ok(vec![1, 2]));
    assert_eq!(keys("COPY a b DB 0 REPLACE"), Ok(vec![1, 2]));
    assert_eq!(keys("LCS a b LEN"), Ok(vec![1, 2]));
    assert_eq!(keys("LMOVE a b LEFT RIGHT"), Ok(vec![1, 2]));
    assert_eq!(keys("PING"), Ok(vec![]));
    assert_eq!(keys("TIME"), Ok(vec![]));
}

#[test]
fn ranges_and_steps() {
    assert_eq!(keys("MGET a b c"), Ok(vec![1, 2, 3]));
    assert_eq!(keys("DEL a b c d"), Ok(vec![1, 2, 3, 4]));
    assert_eq!(keys("MSET a 1 b 2 c 3"), Ok(vec![1, 3, 5]));
    assert_eq!(keys("MSETNX a 1 b 2"), Ok(vec![1, 3]));
    assert_eq!(keys("BITOP AND d a b c"), Ok(vec![2, 3, 4, 5]));
    assert_eq!(keys("BLPOP a b c 0"), Ok(vec![1, 2, 3]));
    assert_eq!(keys("SINTERSTORE d a b"), Ok(vec![1, 2, 3]));
    assert_eq!(keys("PFMERGE d a b"), Ok(vec![1, 2, 3]));
    assert_eq!(keys("WATCH a b"), Ok(vec![1, 2]));
}

#[test]
fn numkeys() {
    assert_eq!(keys("EVAL s 2 a b x y"), Ok(vec![3, 4]));
    assert_eq!(keys("evalsha s 0 x y"), Ok(vec![]));
    assert_eq!(keys("FCALL f 1 a x"), Ok(vec![3]));
    assert_eq!(keys("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), Ok(vec![1, 3, 4]));
    assert_eq!(keys("ZINTERSTORE d 1 a"), Ok(vec![1, 3]));
    assert_eq!(keys("ZDIFFSTORE d 2 a b"), Ok(vec![1, 3, 4]));
    assert_eq!(keys("ZUNION 2 a b WITHSCORES"), Ok(vec![2, 3]));
    assert_eq!(keys("ZINTERCARD 2 a b LIMIT 1"), Ok(vec![2, 3]));
    assert_eq!(keys("SINTERCARD 2 a b"), Ok(vec![2, 3]));
    assert_eq!(keys("LMPOP 2 a b LEFT COUNT 2"), Ok(vec![2, 3]));
    assert_eq!(keys("BLMPOP 0 2 a b LEFT"), Ok(vec![3, 4]));
    assert_eq!(keys("ZMPOP 1 a MIN"), Ok(vec![2]));
    assert_eq!(keys("BZMPOP 1.5 2 a b MAX"), Ok(vec![3, 4]));
}

#[test]
fn invalid_numkeys() {
    let bad = Err(KeyError::InvalidNumKeys);
    assert_eq!(keys("EVAL s 5 a"), bad);
    assert_eq!(keys("EVAL s -1 a"), bad);
    assert_eq!(keys("EVAL s x a"), bad);
    assert_eq!(keys("EVAL s 01 a"), bad);
    assert_eq!(keys("EVAL s +1 a"), bad);
    assert_eq!(keys("EVAL s 99999999999999999999 a"), bad);
    assert_eq!(keys("ZUNIONSTORE d x a"), bad);
    assert_eq!(keys("ZUNIONSTORE d 0 a"), bad);
    assert_eq!(keys("ZUNIONSTORE d 3 a b"), bad);
    assert_eq!(keys("SINTERCARD 0 a"), bad);
    assert_eq!(keys("LMPOP 2 a LEFT"), Ok(vec![2, 3])); // "LEFT" counted as a key, as Redis
    assert_eq!(keys("LMPOP 3 a LEFT"), bad);
    assert_eq!(keys("XREAD STREAMS a"), bad);
    // Too few arguments for the spec: no panic.
    assert_eq!(keys("GET"), bad);
    assert_eq!(keys("EVAL"), bad);
}

#[test]
fn keywords() {
    assert_eq!(keys("XREAD COUNT 2 STREAMS a b 0 0"), Ok(vec![4, 5]));
    assert_eq!(keys("xread block 0 streams a 0"), Ok(vec![4]));
    assert_eq!(keys("XREADGROUP GROUP g c STREAMS a b > >"), Ok(vec![5, 6]));
    assert_eq!(
        keys("XREADGROUP GROUP g c COUNT 1 NOACK STREAMS a >"),
        Ok(vec![8])
    );
    assert_eq!(keys("GEORADIUS k 1 2 3 m"), Ok(vec![1]));
    assert_eq!(keys("GEORADIUS k 1 2 3 m STORE d"), Ok(vec![1, 5 + 2]));
    assert_eq!(
        keys("GEORADIUS k 1 2 3 m STORE d STOREDIST e"),
        Ok(vec![1, 7, 9])
    );
    assert_eq!(
        keys("GEORADIUSBYMEMBER k m 3 km STOREDIST d"),
        Ok(vec![1, 6])
    );
    assert_eq!(
        keys("GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"),
        Ok(vec![1, 2])
    );
}

#[test]
fn fallbacks() {
    assert_eq!(keys("SORT k"), Ok(vec![1]));
    assert_eq!(
        keys("SORT k BY w_* LIMIT 0 1 GET o_* STORE d"),
        Ok(vec![1, 10])
    );
    assert_eq!(keys("SORT k STORE d STORE e"), Ok(vec![1, 5]));
    assert_eq!(keys("SORT k GET store"), Ok(vec![1]));
    assert_eq!(keys("SORT_RO k STORE d"), Ok(vec![1]));
    assert_eq!(keys("MIGRATE h 1 k 0 10"), Ok(vec![3]));
    assert_eq!(keys("MIGRATE h 1 k 0 10 COPY REPLACE"), Ok(vec![3]));
    assert_eq!(keys("MIGRATE h 1 '' 0 10 KEYS a b"), Ok(vec![7, 8]));
    assert_eq!(
        keys("MIGRATE h 1 '' 0 10 AUTH2 u keys KEYS a b"),
        Ok(vec![10, 11])
    );
    assert_eq!(
        keys("MIGRATE h 1 k 0 10 KEYS a b"),
        Err(KeyError::InvalidNumKeys)
    );
}

#[test]
fn subcommand_keys() {
    assert_eq!(keys("OBJECT ENCODING k"), Ok(vec![2]));
    assert_eq!(keys("object freq k"), Ok(vec![2]));
    assert_eq!(keys("MEMORY USAGE k SAMPLES 5"), Ok(vec![2]));
    assert_eq!(keys("XINFO STREAM s FULL"), Ok(vec![2]));
    assert_eq!(keys("XGROUP CREATE s g $ MKSTREAM"), Ok(vec![2]));
    assert_eq!(keys("CLIENT SETNAME x"), Ok(vec![]));
}

#[test]
fn shard_channels_route_but_are_not_keys() {
    assert_eq!(keys("SPUBLISH ch m"), Ok(vec![]));
    assert_eq!(routing("SPUBLISH ch m"), vec![1]);
    assert_eq!(routing("SSUBSCRIBE a b"), vec![1, 2]);
    assert_eq!(routing("SUNSUBSCRIBE a"), vec![1]);
    assert_eq!(routing("GET k"), vec![1]);
}

#[test]
fn key_indices_spill_and_clear() {
    let mut k = KeyIndices::new();
    assert!(k.is_empty());
    for i in 0..20 {
        k.push(i);
    }
    assert_eq!(k.len(), 20);
    assert_eq!(k.iter().collect::<Vec<_>>(), (0..20).collect::<Vec<_>>());
    k.clear();
    assert!(k.is_empty());
    k.push(7);
    assert_eq!(k.as_slice(), &[7]);
    assert_eq!(format!("{k:?}"), "[7]");
    let mset: Vec<String> = std::iter::once("MSET".to_string())
        .chain((0..40).map(|i| format!("a{i}")))
        .collect();
    lookup(&mset[..])
        .unwrap()
        .key_indices(&mset[..], &mut k)
        .unwrap();
    assert_eq!(k.len(), 20);
    assert_eq!(k.as_slice()[19], 39);
}

/// `sole_routing_key` is the shortcut of `routing_indices` for one key at index 1: for every
/// command (and subcommand) of the table, on lines of 1 to 6 arguments, it gives that key
/// exactly when `routing_indices` gives `[1]`, and nothing when the command routes otherwise.
#[test]
fn sole_routing_key_agrees_with_routing_indices() {
    let words = ["k1", "2", "k3", "STREAMS", "5", "k6"];
    let mut shortcuts = 0;
    for top in crate::all() {
        let mut cmds = vec![top];
        cmds.extend(top.subcommands.iter());
        for cmd in cmds {
            for n in 0..=words.len() {
                let mut line: Vec<&[u8]> = cmd.name.split('|').map(str::as_bytes).collect();
                let named = line.len();
                line.extend(words[..n].iter().map(|w| w.as_bytes()));
                if !crate::fuzzing::check_sole_routing_key(cmd, &line) {
                    continue;
                }
                shortcuts += 1;
                assert_eq!(named, 1, "{}: a subcommand has no key at index 1", cmd.name);
            }
        }
    }
    // GET, SET, INCR, HGET … each on lines of 1 to 6 arguments.
    assert!(shortcuts > 100 * 6, "only {shortcuts} shortcuts taken");
    assert!(lookup(&["GET"][..])
        .unwrap()
        .sole_routing_key(&["GET"][..])
        .is_none());
    assert!(lookup(&["MGET", "a", "b"][..])
        .unwrap()
        .sole_routing_key(&["MGET", "a", "b"][..])
        .is_none());
}

#[test]
fn key_groups_complete_only_for_whole_pairs() {
    let complete = |line: &str| {
        let args: Vec<&str> = line.split(' ').collect();
        lookup(&args[..]).unwrap().key_groups_complete(args.len())
    };
    assert!(complete("MSET a 1"));
    assert!(complete("MSET a 1 b 2"));
    assert!(!complete("MSET a 1 b"));
    assert!(!complete("MSETNX a 1 b"));
    assert!(complete("MSETNX a 1 b 2"));
    // Commands whose keys do not repeat in groups are not affected.
    assert!(complete("MGET a b c"));
    assert!(complete("DEL a b c"));
    assert!(complete("HSET h f"));
    assert!(complete("EVAL s 2 a b c"));
    // Only MSET and MSETNX have a repeating key group in the 7.0 table.
    let grouped: Vec<&str> = crate::all()
        .iter()
        .filter(|c| !c.key_groups_complete(4))
        .map(|c| c.name)
        .collect();
    assert_eq!(grouped, ["mset", "msetnx"]);
    // The legacy-step shortcut never hides a command the specs would check.
    for cmd in crate::all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        for argc in 1..8 {
            assert_eq!(
                cmd.key_groups_complete(argc),
                cmd.key_groups_by_specs(argc),
                "{} with {argc} arguments",
                cmd.name
            );
        }
    }
}

#[test]
fn c_atoi() {
    for (s, want) in [
        (&b"1"[..], 1),
        (b"01", 1),
        (b"  +7x", 7),
        (b"-3", -3),
        (b"", 0),
        (b"x1", 0),
        (b"4294967297", 1),
        (b"99999999999999999999", -1),
        (b"-99999999999999999999", 0),
        (b"-9223372036854775808", 0),
        (b"2\x003", 2),
    ] {
        assert_eq!(super::fallback::c_atoi(s), want, "{s:?}");
    }
}
