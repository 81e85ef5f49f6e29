//! INFO's `# Keyspace` section for the whole cluster. slotgate answers INFO itself (see
//! [`crate::family::local`]); when the client asks for the keyspace (`INFO`, `INFO default`,
//! `INFO all`, `INFO everything`, `INFO keyspace`) the reply waits for `INFO keyspace` from
//! every primary and adds their sums: `db0:keys=Σ,expires=Σ,avg_ttl=…`, where `avg_ttl` is
//! the average of the primaries' `avg_ttl` weighted by their `expires` (a primary reporting
//! 0, Redis's "not sampled yet", does not weigh). Replicas are never asked.
//!
//! INFO stays available when a primary does not answer: the keyspace then sums the primaries
//! that did, and says how many did not (`slotgate_primaries_unanswered:N`, only then).

use bytes::{Bytes, BytesMut};
use slotgate_resp::{parse_value, Request};

use crate::protocol::Protocol;

/// Whether `INFO <sections…>` includes the keyspace section (Redis 7.0's rules).
pub(crate) fn wanted(req: &Request) -> bool {
    req.argc() == 1
        || req.args().skip(1).any(|a| {
            [&b"all"[..], b"everything", b"default", b"keyspace"]
                .iter()
                .any(|s| a.eq_ignore_ascii_case(s))
        })
}

/// Write the INFO text (a verbatim string in RESP3): `local`, then `# Keyspace` summed over
/// `replies` (each one primary's `INFO keyspace`; errors and odd replies count as
/// unanswered).
pub(crate) fn write_info(local: &str, replies: &[Bytes], out: &mut BytesMut, proto: Protocol) {
    let mut dbs = Vec::new();
    let mut unanswered = 0;
    for reply in replies {
        match parse_value(reply) {
            Ok(Some((v, _))) if v.as_bytes().is_some() => add_keyspace(
                &mut dbs,
                &String::from_utf8_lossy(v.as_bytes().unwrap_or_default()),
            ),
            _ => unanswered += 1,
        }
    }
    let mut text = String::with_capacity(local.len() + 128);
    text.push_str(local);
    text.push_str(&render(&mut dbs, unanswered));
    proto.verbatim(out, text.as_bytes());
}

/// One `dbN` line summed over the primaries.
#[derive(Debug, Default, PartialEq)]
struct DbSum {
    db: u32,
    /// Fields in the order the first primary gave them, summed (`avg_ttl` excluded).
    fields: Vec<(String, i64)>,
    /// Σ avg_ttl × expires and Σ expires, over primaries with a nonzero `avg_ttl`.
    ttl_weighted: i128,
    ttl_weight: i128,
}

/// Fold one primary's `INFO keyspace` text (`db0:keys=1,expires=0,avg_ttl=0`) into `dbs`.
fn add_keyspace(dbs: &mut Vec<DbSum>, text: &str) {
    for line in text.lines() {
        let Some((name, values)) = line.trim_end().split_once(':') else {
            continue;
        };
        let Some(db) = name.strip_prefix("db").and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let i = match dbs.iter().position(|d| d.db == db) {
            Some(i) => i,
            None => {
                dbs.push(DbSum {
                    db,
                    ..DbSum::default()
                });
                dbs.len() - 1
            }
        };
        let sum = &mut dbs[i];
        let mut avg_ttl = 0;
        let mut expires = 0;
        for (k, v) in values.split(',').filter_map(|kv| kv.split_once('=')) {
            let Ok(v) = v.parse::<i64>() else { continue };
            match k {
                "avg_ttl" => avg_ttl = v,
                _ => {
                    if k == "expires" {
                        expires = v;
                    }
                    match sum.fields.iter_mut().find(|(name, _)| name == k) {
                        Some((_, total)) => *total = total.saturating_add(v),
                        None => sum.fields.push((k.to_string(), v)),
                    }
                }
            }
        }
        if avg_ttl > 0 {
            sum.ttl_weighted += i128::from(avg_ttl) * i128::from(expires);
            sum.ttl_weight += i128::from(expires);
        }
    }
}

/// `# Keyspace` with one line per database, in database order, like Redis; then how many
/// primaries did not answer, when some did not.
fn render(dbs: &mut [DbSum], unanswered: usize) -> String {
    dbs.sort_by_key(|d| d.db);
    let mut out = String::from("# Keyspace\r\n");
    for d in dbs.iter() {
        let avg_ttl = if d.ttl_weight > 0 {
            d.ttl_weighted / d.ttl_weight
        } else {
            0
        };
        let mut fields: Vec<String> = d.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        // Redis puts avg_ttl after expires; keep it there.
        let at = d
            .fields
            .iter()
            .position(|(k, _)| k == "expires")
            .map_or(fields.len(), |i| i + 1);
        fields.insert(at, format!("avg_ttl={avg_ttl}"));
        out.push_str(&format!("db{}:{}\r\n", d.db, fields.join(",")));
    }
    if unanswered > 0 {
        out.push_str(&format!("slotgate_primaries_unanswered:{unanswered}\r\n"));
    }
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use slotgate_resp::encode;

    fn node(text: &str) -> Bytes {
        let mut b = BytesMut::with_capacity(text.len() + 16);
        encode::bulk(&mut b, text.as_bytes());
        b.freeze()
    }

    fn merged(local: &str, replies: &[Bytes]) -> String {
        let mut out = BytesMut::new();
        write_info(local, replies, &mut out, Protocol::Resp2);
        match parse_value(&out) {
            Ok(Some((v, _))) => String::from_utf8(v.as_bytes().unwrap().to_vec()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sections_asked_for() {
        let yes: [&[&[u8]]; 5] = [
            &[b"INFO"],
            &[b"info", b"ALL"],
            &[b"INFO", b"server", b"keyspace"],
            &[b"INFO", b"everything"],
            &[b"INFO", b"default"],
        ];
        for args in yes {
            assert!(wanted(&Request::from_args(args)), "{args:?}");
        }
        assert!(!wanted(&Request::from_args(&[&b"INFO"[..], b"server"])));
    }

    #[test]
    fn keys_and_expires_are_summed_avg_ttl_weighted() {
        let text = merged(
            "# Server\r\nredis_version:7.0.15\r\n\r\n",
            &[
                node("# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n"),
                node("# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\n"),
                node("# Keyspace\r\ndb0:keys=1,expires=4,avg_ttl=0\r\n"),
                node("# Keyspace\r\n"),
            ],
        );
        assert_eq!(
            text,
            "# Server\r\nredis_version:7.0.15\r\n\r\n# Keyspace\r\ndb0:keys=16,expires=12,avg_ttl=2500\r\n\r\n"
        );
    }

    #[test]
    fn an_empty_cluster_has_an_empty_section() {
        assert_eq!(
            merged("", &[node("# Keyspace\r\n"), node("# Keyspace\r\n")]),
            "# Keyspace\r\n\r\n"
        );
    }

    #[test]
    fn unanswered_primaries_are_left_out_and_counted() {
        let text = merged(
            "",
            &[
                node("# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\n"),
                Bytes::from_static(
                    b"-CLUSTERDOWN slotgate: upstream 127.0.0.1:1 is unreachable\r\n",
                ),
            ],
        );
        assert_eq!(
            text,
            "# Keyspace\r\ndb0:keys=3,expires=0,avg_ttl=0\r\nslotgate_primaries_unanswered:1\r\n\r\n"
        );
    }

    #[test]
    fn unknown_fields_are_summed_in_order() {
        let text = merged(
            "",
            &[
                node("# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=10,subexpiry=0\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n"),
                node("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=30,subexpiry=1\r\n"),
            ],
        );
        assert_eq!(
            text,
            "# Keyspace\r\ndb0:keys=3,expires=2,avg_ttl=20,subexpiry=1\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n\r\n"
        );
    }
}
