//! Every reply the proxy makes itself, in one place. Wording copies Redis where Redis has a
//! reply for the condition; proxy-only conditions start with `-ERR slotgate:`. Tests assert
//! these bytes exactly.

use bytes::{BufMut, Bytes, BytesMut};

/// `+OK`
pub const OK: &[u8] = b"+OK\r\n";
/// `+PONG`
pub const PONG: &[u8] = b"+PONG\r\n";
/// Null bulk string (RESP2).
pub const NULL_BULK: &[u8] = b"$-1\r\n";
/// Empty array.
pub const EMPTY_ARRAY: &[u8] = b"*0\r\n";
/// Null array (RESP2): EXEC of a transaction aborted because a WATCHed key changed.
pub const NULL_ARRAY: &[u8] = b"*-1\r\n";
/// A command inside MULTI was queued.
pub const QUEUED: &[u8] = b"+QUEUED\r\n";
/// MULTI inside MULTI (Redis 7.0's text).
pub const MULTI_NESTED: &[u8] = b"-ERR MULTI calls can not be nested\r\n";
/// EXEC outside MULTI (Redis 7.0's text).
pub const EXEC_WITHOUT_MULTI: &[u8] = b"-ERR EXEC without MULTI\r\n";
/// DISCARD outside MULTI (Redis 7.0's text).
pub const DISCARD_WITHOUT_MULTI: &[u8] = b"-ERR DISCARD without MULTI\r\n";
/// WATCH inside MULTI (Redis 7.0's text).
pub const WATCH_INSIDE_MULTI: &[u8] = b"-ERR WATCH inside MULTI is not allowed\r\n";
/// EXEC after a command was refused inside MULTI (Redis 7.0's text).
pub const EXECABORT: &[u8] = b"-EXECABORT Transaction discarded because of previous errors.\r\n";
/// A command flagged `no_multi` inside MULTI (Redis 7.0's text).
pub const NOT_IN_MULTI: &[u8] = b"-ERR Command not allowed inside a transaction\r\n";
/// The commands queued since MULTI would exceed `limits.max_request_bytes`.
pub const TRANSACTION_TOO_LARGE: &[u8] =
    b"-ERR slotgate: transaction too large (its queued commands exceed limits.max_request_bytes)\r\n";
/// The client asked for a slot no primary serves.
pub const CLUSTERDOWN_UNCOVERED: &[u8] = b"-CLUSTERDOWN Hash slot not served\r\n";
/// Keys of one command hash to different slots.
pub const CROSSSLOT: &[u8] = b"-CROSSSLOT Keys in request don't hash to the same slot\r\n";
/// A read under `read_from: replica` when no replica of the slot's shard may be read from.
pub fn no_replica(slot: u16) -> Bytes {
    Bytes::from(format!(
        "-CLUSTERDOWN slotgate: no replica to read slot {slot} from (upstream.read_from: replica)\r\n"
    ))
}

/// CLUSTER, READONLY and READWRITE in standalone and sentinel modes (Redis's own words for a
/// server without cluster support).
pub const CLUSTER_DISABLED: &[u8] = b"-ERR This instance has cluster support disabled\r\n";
/// SELECT of a database the server does not have.
pub const DB_OUT_OF_RANGE: &[u8] = b"-ERR DB index is out of range\r\n";
/// SELECT of a database other than 0 in cluster mode (Redis Cluster's own words).
pub const SELECT_IN_CLUSTER: &[u8] = b"-ERR SELECT is not allowed in cluster mode\r\n";
/// A non-integer where Redis wants an integer.
pub const NOT_AN_INTEGER: &[u8] = b"-ERR value is not an integer or out of range\r\n";
/// HELLO with a protocol version this build does not speak.
pub const NOPROTO: &[u8] = b"-NOPROTO unsupported protocol version\r\n";
/// WAIT with a timeout that is not an integer (Redis 7.0's text).
pub const TIMEOUT_NOT_AN_INTEGER: &[u8] = b"-ERR timeout is not an integer or out of range\r\n";
/// WAIT with a negative timeout (Redis 7.0's text).
pub const TIMEOUT_NEGATIVE: &[u8] = b"-ERR timeout is negative\r\n";
/// Too many clients.
pub const MAX_CLIENTS: &[u8] = b"-ERR max number of clients reached\r\n";
/// Syntax error.
pub const SYNTAX: &[u8] = b"-ERR syntax error\r\n";
/// `CLIENT NO-TOUCH ON` (docs/replies.md).
pub const NO_TOUCH: &[u8] = b"-ERR slotgate: CLIENT NO-TOUCH ON is not supported by the proxy: connections to the servers are shared, so it would apply to other clients' commands\r\n";
/// AUTH when no user is configured.
pub const AUTH_NOT_CONFIGURED: &[u8] = b"-ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?\r\n";
/// Wrong user or password.
pub const WRONGPASS: &[u8] = b"-WRONGPASS invalid username-password pair or user is disabled.\r\n";
/// A command before authenticating, when users are configured (Redis 7.0's text).
pub const NOAUTH: &[u8] = b"-NOAUTH Authentication required.\r\n";
/// HELLO without AUTH before authenticating, when users are configured (Redis 7.0.15's text,
/// which names the option `HELLO AUTH <user> <pass>`).
pub const HELLO_NOAUTH: &[u8] = b"-NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time\r\n";
/// The connection's user was removed or turned `off` by a reload: this reply, then close.
pub const USER_REVOKED: &[u8] =
    b"-ERR slotgate: this connection's user was removed or disabled; closing the connection\r\n";
/// CLIENT SETNAME with a bad name.
pub const BAD_CLIENT_NAME: &[u8] =
    b"-ERR Client names cannot contain spaces, newlines or special characters.\r\n";
/// The proxy is shutting down and takes no new command.
pub const SHUTTING_DOWN: &[u8] = b"-ERR slotgate: shutting down\r\n";
/// A SCAN cursor that is not an unsigned 64-bit decimal number (Redis 7.0's text).
pub const INVALID_CURSOR: &[u8] = b"-ERR invalid cursor\r\n";
/// `limits.max_buffered` is reached: the replies and requests slotgate holds for all clients
/// fill its budget. The command was not run.
pub const BUFFERS_FULL: &[u8] =
    b"-OOM slotgate: buffers for all clients are full (limits.max_buffered); command not run, try again later\r\n";
/// Routing the command panicked (a bug, counted in `slotgate_panics_total` and logged);
/// the connection closes after this reply.
pub const INTERNAL_ERROR: &[u8] =
    b"-ERR slotgate: internal error while handling this command (logged); closing the connection\r\n";
/// A reply that a task of its own should have computed never came (the task ended
/// without one: a bug, or the worker is stopping).
pub const TASK_ENDED: &[u8] =
    b"-ERR slotgate: internal error: the command's task ended without a reply\r\n";
/// CLUSTER COUNTKEYSINSLOT with a slot outside 0..16383 (Redis 7.0's text).
pub const INVALID_SLOT: &[u8] = b"-ERR Invalid slot\r\n";
/// HELLO with a protocol version that is not a number (Redis 7.0's text).
pub const HELLO_BAD_PROTOVER: &[u8] =
    b"-ERR Protocol version is not an integer or out of range\r\n";

/// The text of the NOPERM reply for a refused key (Redis 7.0), without `-` and CRLF.
macro_rules! noperm_key {
    () => {
        "NOPERM this user has no permissions to access one of the keys used as arguments"
    };
}
/// The text of the NOPERM reply for a refused channel (Redis 7.0), without `-` and CRLF.
macro_rules! noperm_channel {
    () => {
        "NOPERM this user has no permissions to access one of the channels used as arguments"
    };
}
/// A key the user's ACL rules do not allow, as text ([`NOPERM_KEY`] without `-` and CRLF).
pub const NOPERM_KEY_TEXT: &str = noperm_key!();
/// A key the user's ACL rules do not allow (Redis 7.0's text).
pub const NOPERM_KEY: &[u8] = concat!("-", noperm_key!(), "\r\n").as_bytes();
/// A channel the user's ACL rules do not allow, as text.
pub const NOPERM_CHANNEL_TEXT: &str = noperm_channel!();
/// A channel the user's ACL rules do not allow (Redis 7.0's text).
pub const NOPERM_CHANNEL: &[u8] = concat!("-", noperm_channel!(), "\r\n").as_bytes();

/// A node's reply did not have the shape its command promises.
pub const UNEXPECTED_REPLY: &[u8] = b"-ERR slotgate: unexpected reply shape from upstream\r\n";

/// A script or function command from a user whose rules grant less than every key and
/// channel, under `scripting.restricted_users: refuse`. Redis's NOPERM wording for a refused
/// command, then why: a node would run the script with slotgate's rights, not the user's.
pub fn script_refused(name: &str) -> Bytes {
    error(
        format!(
            "NOPERM this user has no permissions to run the '{name}' command: slotgate runs scripts and functions only for users with access to every key and channel (~* &*)"
        )
        .as_bytes(),
    )
}

/// A restricted user's script cannot run as its identity on `node`: the node refused to
/// create (`ACL SETUSER`) or authenticate it; `refusal` is the node's error line.
pub fn script_identity_refused(node: &str, refusal: &[u8]) -> Bytes {
    let refusal = String::from_utf8_lossy(refusal);
    let refusal = refusal.trim_end().trim_start_matches('-');
    error(
        format!(
            "NOPERM slotgate: this user's scripts run on the nodes as an ACL user with its rules, and {node} refused it ({refusal}); slotgate's upstream user needs +acl|setuser, or set scripting.restricted_users: refuse"
        )
        .as_bytes(),
    )
}

/// EVAL, EVALSHA or FCALL inside MULTI from a user whose scripts run as its identity (a
/// transaction runs as slotgate's upstream user).
pub const SCRIPT_IN_MULTI: &[u8] =
    b"-ERR slotgate: scripts and functions of users with restricted key or channel access cannot be used inside MULTI through the proxy\r\n";

/// A node returned a SCAN cursor too large for slotgate's client cursor (see `family/scan.rs`).
pub fn scan_cursor_too_large(node: &str, cursor: u64, limit: u64) -> Bytes {
    error(
        format!(
            "ERR slotgate: SCAN cursor {cursor} from {node} does not fit in slotgate's cursor (node cursors must be below {limit})"
        )
        .as_bytes(),
    )
}

/// SCAN on a cluster with more primaries than a client cursor can name.
pub fn scan_too_many_primaries(max: usize) -> Bytes {
    error(format!("ERR slotgate: SCAN supports at most {max} primaries").as_bytes())
}

/// `-ERR unknown command '<name>', with args beginning with: '<a>' '<b>' ` like Redis 7.0
/// (name cut at 128 bytes, the argument list at about 128 bytes, CR/LF turned into spaces).
pub fn unknown_command<'a>(name: &[u8], args: impl Iterator<Item = &'a [u8]>) -> Bytes {
    let mut list = Vec::new();
    for arg in args {
        if list.len() >= 128 {
            break;
        }
        let room = 128 - list.len();
        list.push(b'\'');
        list.extend_from_slice(&arg[..arg.len().min(room)]);
        list.extend_from_slice(b"' ");
    }
    let mut text = b"ERR unknown command '".to_vec();
    text.extend_from_slice(&name[..name.len().min(128)]);
    text.extend_from_slice(b"', with args beginning with: ");
    text.extend_from_slice(&list);
    error(&text)
}

/// `-ERR unknown subcommand '<sub>'. Try <CMD> HELP.` like Redis 7.0.
pub fn unknown_subcommand(command: &str, sub: &[u8]) -> Bytes {
    let mut text = b"ERR unknown subcommand '".to_vec();
    text.extend_from_slice(&sub[..sub.len().min(128)]);
    text.extend_from_slice(b"'. Try ");
    text.extend_from_slice(command.to_ascii_uppercase().as_bytes());
    text.extend_from_slice(b" HELP.");
    error(&text)
}

/// `-ERR wrong number of arguments for '<name>' command` (name as Redis's table spells it,
/// `client|setname` for subcommands).
pub fn wrong_arity(name: &str) -> Bytes {
    error(format!("ERR wrong number of arguments for '{name}' command").as_bytes())
}

/// `-ERR Syntax error in HELLO option '<opt>'` (Redis 7.0's text).
pub fn hello_bad_option(opt: &[u8]) -> Bytes {
    let mut text = b"ERR Syntax error in HELLO option '".to_vec();
    text.extend_from_slice(opt);
    text.push(b'\'');
    error(&text)
}

/// `-ERR Unrecognized option '<attr>'` for CLIENT SETINFO (Redis 7.2's text).
pub fn setinfo_bad_option(attr: &[u8]) -> Bytes {
    let mut text = b"ERR Unrecognized option '".to_vec();
    text.extend_from_slice(attr);
    text.push(b'\'');
    error(&text)
}

/// `-ERR slotgate: command '<name>' is not supported by the proxy`.
pub fn unsupported(name: &str) -> Bytes {
    error(format!("ERR slotgate: command '{name}' is not supported by the proxy").as_bytes())
}

/// `-ERR slotgate: <cap> dedicated connections to <node> are in use …` when a blocking
/// command finds the per-node cap reached.
pub fn dedicated_limit(node: &str, cap: usize) -> Bytes {
    error(
        format!(
            "ERR slotgate: {cap} dedicated connections to {node} are in use (upstream.max_dedicated_per_node); try again later"
        )
        .as_bytes(),
    )
}

/// A command other than the Pub/Sub family, PING, QUIT and RESET in subscribe mode
/// (Redis 7.0's wording).
pub fn subscribe_mode_only(name: &str) -> Bytes {
    error(
        format!(
            "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        )
        .as_bytes(),
    )
}

/// `-ERR slotgate: command '<name>' is not supported yet` for families still to come.
pub fn not_yet(name: &str) -> Bytes {
    error(format!("ERR slotgate: command '{name}' is not supported yet").as_bytes())
}

/// `-ERR slotgate: ACL <SUB> is not available through the proxy; users are configured in
/// slotgate's config file` for every ACL subcommand but WHOAMI (`name` is `acl|<sub>`).
pub fn acl_not_available(name: &str) -> Bytes {
    let sub = name
        .strip_prefix("acl|")
        .unwrap_or(name)
        .to_ascii_uppercase();
    error(
        format!(
            "ERR slotgate: ACL {sub} is not available through the proxy; users are configured in slotgate's config file"
        )
        .as_bytes(),
    )
}

/// The node serving the command did not answer within `op_timeout`.
pub fn upstream_timeout(node: &str) -> Bytes {
    error(format!("TRYAGAIN slotgate: upstream {node} did not answer in time").as_bytes())
}

/// A command that is not read-only did not get its answer within `op_timeout`: it was
/// sent, so it may still run (never `-TRYAGAIN`, which tells clients a retry is safe).
pub fn upstream_timeout_write(node: &str) -> Bytes {
    error(
        format!(
            "ERR slotgate: upstream {node} did not answer in time; the command may have been executed"
        )
        .as_bytes(),
    )
}

/// The node serving the command could not be reached (connect refused or timed out).
pub fn upstream_unreachable(node: &str) -> Bytes {
    error(format!("CLUSTERDOWN slotgate: upstream {node} is unreachable").as_bytes())
}

/// The connection carrying a non-idempotent command broke after the command was written:
/// the command may or may not have run.
pub fn upstream_lost(node: &str) -> Bytes {
    error(
        format!(
            "ERR slotgate: connection to upstream {node} lost; the command may have been executed"
        )
        .as_bytes(),
    )
}

/// The node sent bytes that are not RESP.
pub fn upstream_protocol(node: &str) -> Bytes {
    error(format!("ERR slotgate: upstream {node} sent an invalid reply").as_bytes())
}

/// `-EXECABORT Transaction discarded because of: <error>`, Redis 7.0's reply when EXEC itself
/// is refused (`EXEC x`), also for a transaction the node discarded because it refused one
/// of the queued commands. `error` is the refusal, a whole error reply; like Redis, its
/// generic `ERR` code is left out (`… because of: wrong number of arguments …`).
pub fn exec_abort_because(error: &[u8]) -> Bytes {
    let error = error.strip_prefix(b"-").unwrap_or(error);
    let error = error.strip_prefix(b"ERR ").unwrap_or(error);
    let error = error.strip_suffix(b"\r\n").unwrap_or(error);
    let mut text = b"EXECABORT Transaction discarded because of: ".to_vec();
    text.extend_from_slice(error);
    self::error(&text)
}

/// The node refused the MULTI slotgate sent before a transaction's commands (the proxy's
/// upstream user lacks `+multi`): those commands then ran one by one.
pub fn multi_refused(error: &[u8]) -> Bytes {
    let error = error.strip_prefix(b"-").unwrap_or(error);
    let error = error.strip_suffix(b"\r\n").unwrap_or(error);
    let mut text = b"ERR slotgate: the node refused MULTI (".to_vec();
    text.extend_from_slice(error);
    text.extend_from_slice(b"); the queued commands may have run outside a transaction");
    self::error(&text)
}

/// `-ERR slotgate: command '<name>' cannot be used inside MULTI through the proxy` for
/// commands slotgate cannot queue: ones it answers itself (but PING, ECHO, QUIT, RESET,
/// COMMAND), ones that need every shard, and the subscribe family.
pub fn not_in_transaction(name: &str) -> Bytes {
    error(
        format!("ERR slotgate: command '{name}' cannot be used inside MULTI through the proxy")
            .as_bytes(),
    )
}

/// A node refused the `ROLE` that WAIT's emulation sends (the proxy's upstream user lacks
/// `+role`, or the command is renamed): WAIT cannot count acknowledgements.
pub fn wait_role_refused(node: &str, error: &[u8]) -> Bytes {
    let error = error.strip_prefix(b"-").unwrap_or(error);
    let error = error.strip_suffix(b"\r\n").unwrap_or(error);
    let mut text =
        format!("ERR slotgate: WAIT needs ROLE on {node}, which answered: ").into_bytes();
    text.extend_from_slice(error);
    self::error(&text)
}

/// A primary refused the script that WAITAOF's emulation runs before `WAITAOF` (it writes
/// and deletes `slotgate:waitaof:{N}` as the proxy's upstream user, which then needs
/// `+eval` and write access to that key): its AOF acknowledgements cannot be asked for.
pub fn waitaof_mark_refused(node: &str, error: &[u8]) -> Bytes {
    let error = error.strip_prefix(b"-").unwrap_or(error);
    let error = error.strip_suffix(b"\r\n").unwrap_or(error);
    let mut text =
        format!("ERR slotgate: WAITAOF needs EVAL on {node}, which answered: ").into_bytes();
    text.extend_from_slice(error);
    self::error(&text)
}

/// An admin command (`upstream.admin_commands: acl`) that did not succeed on every node it
/// went to: `-ERR slotgate: <COMMAND> failed on <node>, … (<error>); … succeeded on <node>, …`.
/// `failed` groups the nodes that gave the same error (the node's own text, without `-`);
/// `succeeded` are the nodes where it ran (`no node` when empty). `command` is spelled as
/// the client would (`CONFIG SET`).
pub fn admin_failed(command: &str, failed: &[(Vec<&str>, String)], succeeded: &[&str]) -> Bytes {
    let failed: Vec<String> = failed
        .iter()
        .map(|(nodes, error)| format!("{} ({error})", nodes.join(", ")))
        .collect();
    let succeeded = match succeeded {
        [] => "no node".to_string(),
        nodes => nodes.join(", "),
    };
    error(
        format!(
            "ERR slotgate: {command} failed on {}; succeeded on {succeeded}",
            failed.join("; ")
        )
        .as_bytes(),
    )
}

/// Build `-<text>\r\n`, with CR and LF inside `text` turned into spaces.
pub fn error(text: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(text.len() + 3);
    buf.put_u8(b'-');
    buf.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    buf.put_slice(b"\r\n");
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_command_matches_redis() {
        let r = unknown_command(b"foo", [&b"a"[..], b"b"].into_iter());
        assert_eq!(
            &r[..],
            b"-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n"
        );
        let r = unknown_command(b"foo", std::iter::empty());
        assert_eq!(
            &r[..],
            b"-ERR unknown command 'foo', with args beginning with: \r\n"
        );
    }

    #[test]
    fn arity_and_subcommand_wording() {
        assert_eq!(
            &wrong_arity("get")[..],
            b"-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            &unknown_subcommand("client", b"bogus")[..],
            b"-ERR unknown subcommand 'bogus'. Try CLIENT HELP.\r\n"
        );
    }

    #[test]
    fn acl_refusal_names_the_subcommand() {
        assert_eq!(
            &acl_not_available("acl|setuser")[..],
            &b"-ERR slotgate: ACL SETUSER is not available through the proxy; users are configured in slotgate's config file\r\n"[..]
        );
    }

    #[test]
    fn exec_abort_names_the_refusal() {
        assert_eq!(
            &exec_abort_because(b"-MOVED 3999 127.0.0.1:7001\r\n")[..],
            &b"-EXECABORT Transaction discarded because of: MOVED 3999 127.0.0.1:7001\r\n"[..]
        );
        assert_eq!(
            &exec_abort_because(&wrong_arity("exec"))[..],
            &b"-EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command\r\n"[..]
        );
    }

    #[test]
    fn admin_failure_names_the_nodes_and_their_errors() {
        let failed = [
            (vec!["10.0.0.1:6379", "10.0.0.2:6379"], "ERR no".to_string()),
            (vec!["10.0.0.3:6379"], "NOPERM x".to_string()),
        ];
        assert_eq!(
            &admin_failed("CONFIG SET", &failed, &["10.0.0.4:6379"])[..],
            &b"-ERR slotgate: CONFIG SET failed on 10.0.0.1:6379, 10.0.0.2:6379 (ERR no); 10.0.0.3:6379 (NOPERM x); succeeded on 10.0.0.4:6379\r\n"[..]
        );
        assert_eq!(
            &admin_failed("SAVE", &failed[1..], &[])[..],
            &b"-ERR slotgate: SAVE failed on 10.0.0.3:6379 (NOPERM x); succeeded on no node\r\n"[..]
        );
    }

    /// The template docs/replies.md shows for [`admin_failed`].
    #[test]
    fn admin_failure_is_documented() {
        let doc = include_str!("../../../docs/replies.md");
        assert!(doc.contains(
            "`-ERR slotgate: <COMMAND> failed on <node>, … (<the node's error>); … succeeded on <node>, … (or no node)`"
        ));
    }

    #[test]
    fn newlines_never_break_the_frame() {
        assert_eq!(&error(b"ERR a\r\nb")[..], b"-ERR a  b\r\n");
    }

    /// docs/replies.md documents every reply: each fixed error text of this module (every
    /// `b"-…"` literal outside the tests, and the NOPERM texts) appears there.
    #[test]
    fn every_fixed_reply_is_documented() {
        let doc = include_str!("../../../docs/replies.md");
        let source = include_str!("replies.rs");
        let code = &source[..source.find("#[cfg(test)]").unwrap()];
        let mut texts: Vec<String> = code
            .split("b\"-")
            .skip(1)
            .filter(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|rest| rest[..rest.find("\\r\\n").unwrap()].to_string())
            .collect();
        texts.push(NOPERM_KEY_TEXT.into());
        texts.push(NOPERM_CHANNEL_TEXT.into());
        assert!(texts.len() > 30, "found only {} replies", texts.len());
        for text in texts {
            assert!(
                doc.contains(&format!("`-{text}`")),
                "docs/replies.md lacks -{text}"
            );
        }
        // The functions' fixed parts too.
        for reply in [
            script_refused("eval"),
            script_identity_refused("n", b"-ERR x"),
            unsupported("x"),
            not_yet("x"),
            not_in_transaction("x"),
            upstream_timeout("n"),
            upstream_timeout_write("n"),
            upstream_unreachable("n"),
            upstream_lost("n"),
            upstream_protocol("n"),
        ] {
            let text = std::str::from_utf8(&reply[1..reply.len() - 2]).unwrap();
            let head = text.split(['\'', '<']).next().unwrap();
            let head = head
                .split(" x")
                .next()
                .unwrap()
                .split(" n ")
                .next()
                .unwrap();
            assert!(doc.contains(head), "docs/replies.md lacks {head}");
        }
    }
}
