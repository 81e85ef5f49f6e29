//! Differential tests of `slotgate_proxy::acl` against a real redis-server 7.0: for a matrix
//! of users (`ACL SETUSER`) and command lines, [`AclRules::check`] must give the answer Redis
//! gives to `ACL DRYRUN` (allowed, or refused for the same command, key or channel); rule
//! strings must be accepted or refused like `ACL SETUSER` does, with the same message; the
//! glob matcher must agree with Redis on random patterns; and the NOPERM replies must be the
//! bytes a real command gets when a user runs it.
//!
//! A missing redis-server fails these tests with a message saying how to install it.

use slotgate_commands::{all, lookup, Category};
use slotgate_proxy::acl::{glob_match, AclRules, Denied, RuleErrorKind};
use slotgate_tests::probe::Reply;
use slotgate_tests::standalone::{Conn, RedisServer};

// === comparing answers ===

/// What a check decided, in a form both sides can be reduced to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Allowed,
    Command(String),
    Key(Vec<u8>),
    Channel(Vec<u8>),
}

/// `ACL DRYRUN`'s answer as an [`Outcome`]; `None` for a line Redis rejects before any ACL
/// check (unknown command, wrong arity).
fn dryrun_outcome(reply: &Reply) -> Option<Outcome> {
    let text = match reply {
        Reply::Status(s) if s == "OK" => return Some(Outcome::Allowed),
        Reply::Error(_) => return None,
        Reply::Bulk(Some(b)) => b.clone(),
        other => panic!("unexpected ACL DRYRUN reply {other:?}"),
    };
    let rest = text
        .strip_prefix(b"This user has no permissions to ")
        .unwrap_or_else(|| {
            panic!(
                "unexpected ACL DRYRUN text {:?}",
                String::from_utf8_lossy(&text)
            )
        });
    let quoted = |prefix: &[u8], suffix: &[u8]| -> Option<Vec<u8>> {
        rest.strip_prefix(prefix)?
            .strip_suffix(suffix)
            .map(<[u8]>::to_vec)
    };
    if let Some(name) = quoted(b"run the '", b"' command") {
        Some(Outcome::Command(String::from_utf8(name).unwrap()))
    } else if let Some(key) = quoted(b"access the '", b"' key") {
        Some(Outcome::Key(key))
    } else if let Some(channel) = quoted(b"access the '", b"' channel") {
        Some(Outcome::Channel(channel))
    } else {
        panic!(
            "unexpected ACL DRYRUN text {:?}",
            String::from_utf8_lossy(&text)
        )
    }
}

fn our_outcome(acl: &AclRules, args: &[Vec<u8>]) -> Outcome {
    let cmd = lookup(args).expect("known command");
    match acl.check(cmd, args) {
        Ok(()) => Outcome::Allowed,
        Err(Denied::Command { name }) => Outcome::Command(name.to_string()),
        Err(Denied::Key { index }) => Outcome::Key(args[index].clone()),
        Err(Denied::Channel { index }) => Outcome::Channel(args[index].clone()),
    }
}

fn words(text: &str) -> Vec<Vec<u8>> {
    text.split_whitespace()
        .map(|w| {
            if w == "''" {
                Vec::new()
            } else {
                w.as_bytes().to_vec()
            }
        })
        .collect()
}

fn show(args: &[Vec<u8>]) -> String {
    args.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates `user` in Redis with `rules` (plus `prefix`, e.g. `allkeys`), parses the same rules
/// for slotgate, then compares `ACL DRYRUN` with `check` for every line. Returns how many
/// lines Redis checked (the others failed before its ACL check).
fn compare(
    conn: &mut Conn,
    user: &str,
    prefix: &str,
    rules: &str,
    lines: &[Vec<Vec<u8>>],
) -> usize {
    let all_rules = format!("{prefix} {rules}");
    let mut setuser: Vec<Vec<u8>> = words(&format!("ACL SETUSER {user} reset on nopass"));
    setuser.extend(words(&all_rules));
    assert_eq!(
        conn.call(&setuser),
        Reply::Status("OK".into()),
        "ACL SETUSER {all_rules}"
    );
    let acl = AclRules::parse(&all_rules).unwrap_or_else(|e| panic!("{all_rules:?}: {e}"));

    let dryruns: Vec<Vec<Vec<u8>>> = lines
        .iter()
        .map(|args| {
            let mut cmd = words(&format!("ACL DRYRUN {user}"));
            cmd.extend(args.iter().cloned());
            cmd
        })
        .collect();
    let mut checked = 0;
    for (args, reply) in lines.iter().zip(conn.pipeline(&dryruns)) {
        let Some(redis) = dryrun_outcome(&reply) else {
            continue;
        };
        checked += 1;
        assert_eq!(
            our_outcome(&acl, args),
            redis,
            "rules {all_rules:?}, line {:?}",
            show(args)
        );
    }
    checked
}

// === commands ===

/// One arity-valid line per command and subcommand (containers themselves are never
/// checked by Redis: it resolves the subcommand first).
fn one_line_per_command() -> Vec<Vec<Vec<u8>>> {
    let mut lines = Vec::new();
    for cmd in all()
        .iter()
        .flat_map(|c| std::iter::once(c).chain(c.subcommands))
    {
        if cmd.is_container() {
            continue;
        }
        let mut args: Vec<Vec<u8>> = cmd.name.split('|').map(|p| p.as_bytes().to_vec()).collect();
        while args.len() < cmd.arity.unsigned_abs() as usize {
            args.push(b"x".to_vec());
        }
        lines.push(args);
    }
    lines
}

#[test]
fn command_rules_match_acl_dryrun() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let lines = one_line_per_command();

    let mut rule_sets: Vec<String> = [
        "+@all",
        "-@all",
        "allcommands",
        "nocommands",
        "",
        "+@all -@dangerous +flushdb",
        "-@all +get",
        "+@all -@slow",
        "-@all +@slow",
        "-@all +@fast",
        "-@all +@connection -client",
        "-@all +client -@connection",
        "-@all +client|id",
        "+@all -client|kill",
        "-@all +config -config|set",
        "+@all -config +config|get",
        "-@all +@admin -@dangerous",
        "allcommands -@keyspace +del",
        "nocommands +@pubsub -publish",
        "-@all +@scripting +@transaction -eval",
        "+@read -@write +@keyspace",
        "+acl|whoami -acl",
        "-acl +acl|whoami",
        "-@all +@all -get +get",
        "+GET +Config|Get +@Hash -HSET",
        "+@all -@slow +@fast +client|id -@read",
        "+@all reset on +ping",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in Category::ALL {
        rule_sets.push(format!("+@{}", c.name()));
        rule_sets.push(format!("+@all -@{}", c.name()));
        rule_sets.push(format!("-@all +@{} -@slow", c.name()));
    }

    let mut checked = 0;
    for (i, rules) in rule_sets.iter().enumerate() {
        checked += compare(
            &mut conn,
            &format!("cmd{i}"),
            "allkeys allchannels",
            rules,
            &lines,
        );
    }
    // Redis knows every command but the newer ones the table carries (two CLIENT
    // subcommands and WAITAOF: gen/extra-commands.json).
    let per_set = checked / rule_sets.len();
    assert_eq!(checked % rule_sets.len(), 0);
    assert!(
        per_set + 3 >= lines.len(),
        "Redis refused {} of {} lines before its ACL check",
        lines.len() - per_set,
        lines.len()
    );
}

// === keys ===

/// Lines touching keys in every shape: the `COMMAND GETKEYS` lines of crates/commands, plus
/// lines whose key flags depend on arguments or come from Redis's own key finders.
fn key_lines() -> Vec<Vec<Vec<u8>>> {
    const EXTRA: &str = "
        SET k1 v GET
        SET k1 v EX 10 get
        SET k1 v NX
        BITFIELD k1 GET u8 0
        BITFIELD k1 GET u8 0 OVERFLOW SAT GET u8 8
        BITFIELD k1 SET u8 0 1
        BITFIELD k1 INCRBY u8 0 1 GET u8 0
        BITFIELD k1 GET u8
        BITFIELD_RO k1 GET u8 0
        EXISTS k1 k2
        TOUCH k1 k2
        TYPE k1
        OBJECT ENCODING k1
        DEL k1 k2 k3
        UNLINK k1 k2
        MGET k1 k2 k3 s1 s2 s3 d1 d2 d3 k4 k5 k6
        MSET k1 v k2 v d1 v s1 v
        MSETNX k1 v d2 v
        COPY s1 d1
        COPY s1 d1 REPLACE
        RENAME s1 d1
        RENAMENX s1 d1
        LMOVE s1 d1 LEFT RIGHT
        BLMOVE s1 d1 LEFT RIGHT 0
        RPOPLPUSH s1 d1
        SMOVE s1 d1 m
        SINTERSTORE d1 s1 s2
        SUNIONSTORE d1 s1
        SDIFF s1 s2
        GETDEL k1
        GETEX k1 PERSIST
        GETSET k1 v
        DUMP k1
        RESTORE k1 0 x
        EXPIRE k1 10
        PERSIST k1
        TTL k1
        STRLEN k1
        APPEND k1 v
        INCR k1
        LPUSH k1 v
        LPOP k1
        LRANGE k1 0 -1
        HSET k1 f v
        HGET k1 f
        HDEL k1 f
        PFADD k1 a
        PFCOUNT k1 k2
        PFMERGE d1 s1 s2
        LCS s1 s2
        SORT s1 STORE d1
        SORT s1 BY w* GET o* STORE d1 LIMIT 0 1
        SORT s1 STORE
        SORT_RO s1
        EVAL s 1 k1
        EVAL s 01 k1
        EVAL s 2x k1 k2
        EVAL s 1 k1 k2
        EVAL s 3 k1
        EVAL_RO s 1 k1
        FCALL f 1 k1
        ZUNIONSTORE d1 01 z1
        ZUNIONSTORE d1 2 s1 s2
        ZINTERCARD 01 s1
        LMPOP 01 s1 LEFT
        GEORADIUS s1 1 2 3 km STORE
        GEORADIUS s1 1 2 3 km STORE d1
        GEOSEARCHSTORE d1 s1 FROMLONLAT 1 2 BYBOX 1 1 km
        XREAD STREAMS s1 s2 0 0
        XREAD COUNT 1 STREAMS streams s1 0 0
        XREAD STREAMS s1 s2 0
        XREADGROUP GROUP g c STREAMS s1 >
        XADD k1 * f v
        XACK k1 g 1-1
        MIGRATE h 1 k1 0 10
        MIGRATE h 1 '' 0 10 KEYS k1 k2
        MIGRATE h 1 k3 0 10 KEYS k1 k2
        OBJECT FREQ k1
        MEMORY USAGE k1
        WATCH k1 k2
        SUBSTR k1 0 1
        SPUBLISH k1 m
        SSUBSCRIBE k1
    ";
    let mut lines: Vec<Vec<Vec<u8>>> = include_str!("../../commands/tests/getkeys_lines.txt")
        .lines()
        .chain(EXTRA.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(words)
        .collect();
    // strcasecmp stops at NUL: Redis reads "GET\0x" as SET's GET option.
    lines.push(vec![
        b"SET".to_vec(),
        b"k1".to_vec(),
        b"v".to_vec(),
        b"GET\0x".to_vec(),
    ]);
    lines.push(vec![
        b"SORT".to_vec(),
        b"s1".to_vec(),
        b"STORE\0x".to_vec(),
        b"d1".to_vec(),
    ]);
    lines
}

#[test]
fn key_rules_match_acl_dryrun() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let lines = key_lines();
    let rule_sets = [
        "%R~*",
        "%W~*",
        "~*",
        "allkeys",
        "resetkeys",
        "~k1",
        "%R~?1 %W~?2",
        "%W~?1 %R~?2 %R~?3",
        "%W~d* %R~[^d]*",
        "%R~d* %W~[^d]*",
        "%RW~?1 %R~*",
        "%R~[a-m]* %W~[n-z]*",
        "%R~k* %W~k* %W~s1",
        "~s* %R~k1 %R",
        "%W~* %R~k?",
        "%R~*1 %W~*2 ~*3",
    ];
    let mut checked = 0;
    for (i, rules) in rule_sets.iter().enumerate() {
        checked += compare(
            &mut conn,
            &format!("keys{i}"),
            "+@all allchannels",
            rules,
            &lines,
        );
    }
    assert!(
        checked > rule_sets.len() * (lines.len() - 20),
        "too few lines reached the ACL check: {checked}"
    );
}

// === channels ===

#[test]
fn channel_rules_match_acl_dryrun() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let lines: Vec<Vec<Vec<u8>>> = [
        "PUBLISH ch1 m",
        "PUBLISH other m",
        "PUBLISH ch* m",
        "SPUBLISH ch1 m",
        "SPUBLISH other m",
        "SUBSCRIBE ch1 ch2",
        "SUBSCRIBE ch1 other",
        "SUBSCRIBE x1y",
        "SSUBSCRIBE ch1",
        "SSUBSCRIBE other ch1",
        "PSUBSCRIBE ch*",
        "PSUBSCRIBE ch1",
        "PSUBSCRIBE c*",
        "PSUBSCRIBE *",
        "PSUBSCRIBE x?y",
        "UNSUBSCRIBE other",
        "PUNSUBSCRIBE other",
        "SUNSUBSCRIBE other",
        "PUBSUB CHANNELS other",
        "PUBSUB NUMSUB other",
    ]
    .iter()
    .map(|l| words(l))
    .collect();
    let rule_sets = [
        "",
        "resetchannels",
        "&ch*",
        "&ch1 &x?y",
        "&*",
        "allchannels",
        "&ch\\*",
        "&* resetchannels &other",
        "&c*",
    ];
    for (i, rules) in rule_sets.iter().enumerate() {
        let checked = compare(
            &mut conn,
            &format!("chan{i}"),
            "+@all allkeys",
            rules,
            &lines,
        );
        assert_eq!(checked, lines.len(), "{rules:?}");
    }
}

// === rule syntax ===

#[test]
fn rule_strings_are_accepted_and_refused_like_acl_setuser() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let rules = [
        "on",
        "off",
        "ON",
        "+get",
        "-get",
        "+GET",
        "+config|get",
        "-config|get",
        "+config|GET",
        "+CONFIG|get",
        "+config|get|x",
        "+get|",
        "+config|",
        "+|",
        "-|",
        "+get|x|",
        "-get|x",
        "-a|b|c",
        "+nosuch",
        "-nosuch",
        "+@nosuch",
        "+@",
        "-@",
        "+",
        "-",
        "~",
        "&",
        "%",
        "%R",
        "%W",
        "%RW",
        "%WR~a",
        "%rw~a",
        "%R~",
        "%~",
        "%~x",
        "%RX~x",
        "%RR~x",
        "%X~a",
        "%R~~x",
        "allkeys ~a",
        "~* ~a",
        "~a ~*",
        "allkeys %R~a",
        "allkeys ~*",
        "&* &a",
        "allchannels &a",
        "&a &*",
        "resetkeys",
        "resetchannels",
        "allcommands",
        "nocommands",
        "foo",
        "@all",
        "+@all",
        "-@ALL",
        "+@Read",
        "+@read|x",
        "ALLKEYS",
        "reset",
        "clearselectors",
        "*",
        "~a*b[c]",
        "&a?b",
        "~*x",
        "&*x",
        "allkeys resetkeys ~a",
        "allchannels resetchannels &a",
        "(+get",
        "+get)",
        "+@all -@dangerous +flushdb ~app:* &*",
    ];
    for (i, text) in rules.iter().enumerate() {
        let mut cmd = words(&format!("ACL SETUSER syntax{i}"));
        cmd.extend(words(text));
        let redis = conn.call(&cmd);
        let ours = AclRules::parse(text);
        match (&redis, &ours) {
            (Reply::Status(ok), Ok(_)) if ok == "OK" => {}
            (Reply::Error(e), Err(ours)) if !text.starts_with('(') => {
                assert_eq!(format!("ERR {ours}"), *e, "rules {text:?}");
            }
            (Reply::Error(_), Err(ours)) => {
                assert_eq!(ours.kind(), RuleErrorKind::Selector, "rules {text:?}");
            }
            _ => panic!("rules {text:?}: Redis {redis:?}, slotgate {ours:?}"),
        }
    }

    // What Redis accepts but slotgate refuses, on purpose, with its own reason.
    for (text, kind) in [
        ("nopass", RuleErrorKind::Password),
        (">secret", RuleErrorKind::Password),
        ("resetpass", RuleErrorKind::Password),
        ("(+get ~x)", RuleErrorKind::Selector),
        ("+select|0", RuleErrorKind::FirstArg),
        ("sanitize-payload", RuleErrorKind::Sanitize),
    ] {
        let mut cmd = words("ACL SETUSER unsupported");
        cmd.extend(words(text));
        if text.starts_with('(') {
            cmd.truncate(3);
            cmd.push(text.as_bytes().to_vec());
        }
        assert_eq!(
            conn.call(&cmd),
            Reply::Status("OK".into()),
            "Redis accepts {text:?}"
        );
        assert_eq!(AclRules::parse(text).unwrap_err().kind(), kind, "{text:?}");
    }
}

// === glob patterns ===

/// A small deterministic generator (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn bytes(&mut self, alphabet: &[u8], max_len: u64) -> Vec<u8> {
        let len = self.next() % (max_len + 1);
        (0..len)
            .map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize])
            .collect()
    }
}

#[test]
fn glob_matches_redis_on_random_patterns() {
    let server = RedisServer::start();
    let mut conn = server.connect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cases: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    const KEY_BYTES: &[u8] = b"ab]^-\\[*?\x80\xff";
    for i in 0..4000 {
        let pattern = rng.bytes(b"ab*?[]^-\\\x80\xff", 9);
        let key = if i % 2 == 0 {
            rng.bytes(KEY_BYTES, 7)
        } else {
            // A key shaped by the pattern, so that many cases match.
            let mut key = Vec::new();
            let mut bytes = pattern.iter().copied().peekable();
            while let Some(b) = bytes.next() {
                match b {
                    b'*' => key.extend(rng.bytes(KEY_BYTES, 2)),
                    b'?' => key.extend(rng.bytes(KEY_BYTES, 1)),
                    b'\\' => key.extend(bytes.next()),
                    b'[' => key.extend(bytes.peek().copied()),
                    _ => key.push(b),
                }
            }
            key
        };
        cases.push((pattern, key));
    }
    // Pathological and limit cases.
    cases.push((
        b"a*".repeat(40).into_iter().chain(*b"b").collect(),
        b"a".repeat(200),
    ));
    cases.push((b"*a".repeat(1100), b"a".repeat(1100)));
    cases.push((b"*a".repeat(900), b"a".repeat(1100)));
    cases.push((
        [b"*a".repeat(1000), b"*".to_vec()].concat(),
        b"a".repeat(1100),
    ));

    let mut commands = Vec::new();
    for (pattern, key) in &cases {
        let mut setuser = words("ACL SETUSER glob reset on nopass +get");
        setuser.push([&b"%R~"[..], pattern].concat());
        commands.push(setuser);
        let mut dryrun = words("ACL DRYRUN glob GET");
        dryrun.push(key.clone());
        commands.push(dryrun);
    }
    let replies = conn.pipeline(&commands);
    let mut matched = 0;
    for ((pattern, key), pair) in cases.iter().zip(replies.chunks(2)) {
        assert_eq!(pair[0], Reply::Status("OK".into()));
        let redis = match dryrun_outcome(&pair[1]) {
            Some(Outcome::Allowed) => true,
            Some(Outcome::Key(_)) => false,
            other => panic!("unexpected {other:?}"),
        };
        matched += redis as usize;
        assert_eq!(
            glob_match(pattern, key),
            redis,
            "pattern {:?} key {:?}",
            String::from_utf8_lossy(pattern),
            String::from_utf8_lossy(key)
        );
    }
    assert!(
        matched > 200 && matched < cases.len() - 200,
        "{matched} matches: a weak sample"
    );
}

// === the replies a real command gets ===

#[test]
fn noperm_replies_are_what_redis_sends() {
    let server = RedisServer::start();
    let mut admin = server.connect();
    let rules = "-@all +get +set +publish +subscribe +psubscribe +config|set %R~r* %W~w* &ch*";
    let mut setuser = words("ACL SETUSER real reset on >pw");
    setuser.extend(words(rules));
    assert_eq!(admin.call(&setuser), Reply::Status("OK".into()));
    let acl = AclRules::parse(rules).unwrap();

    let lines = [
        "GET w1",
        "SET r1 v",
        "SET w1 v GET",
        "INCR r1",
        "CONFIG GET maxmemory",
        "CLIENT ID",
        "PING",
        "PUBLISH other m",
        "SUBSCRIBE ch1 other",
        "PSUBSCRIBE ch1",
        "GET r1",
        "SET w1 v",
        "PUBLISH ch1 m",
    ];
    let mut refused = 0;
    for line in lines {
        // A fresh connection per line: SUBSCRIBE would change the protocol state.
        let mut user = server.connect();
        assert_eq!(
            user.call(&["AUTH", "real", "pw"]),
            Reply::Status("OK".into())
        );
        let args = words(line);
        let reply = user.call(&args);
        let cmd = lookup(&args[..]).unwrap();
        match (acl.check(cmd, &args[..]), reply) {
            (Err(denied), Reply::Error(text)) => {
                assert_eq!(denied.to_string(), text, "{line}");
                assert_eq!(
                    &denied.reply()[..],
                    format!("-{text}\r\n").as_bytes(),
                    "{line}"
                );
                refused += 1;
            }
            (Ok(()), reply) => assert!(
                !matches!(&reply, Reply::Error(e) if e.starts_with("NOPERM")),
                "{line}: slotgate allows it, Redis says {reply:?}"
            ),
            (Err(denied), reply) => {
                panic!("{line}: slotgate refuses ({denied}), Redis said {reply:?}")
            }
        }
    }
    assert_eq!(refused, 10);
}
