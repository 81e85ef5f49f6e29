//! How a fan-out's replies become one reply: MGET parts put back in the client's key order,
//! counts summed, arrays concatenated, all-OK, INFO's keyspace summed … Pure functions of the
//! parts' replies, so every merge is unit-tested without a node.

use bytes::{Bytes, BytesMut};
use slotgate_resp::{aggregate_children, encode, parse_integer};

/// A merge defined where its command is routed, given every part's reply (errors too).
pub(crate) trait WholeMerge {
    /// Write the client's reply to `out` from `replies` (`replies[i]` from part `i`).
    fn write(&self, replies: &[Bytes], out: &mut BytesMut);
}

/// How a fan-out's replies become one reply.
pub(crate) enum Merge {
    /// MGET split by slot: `positions[i]` are the original key positions op `i` fetched.
    Mget {
        total: usize,
        positions: Vec<Vec<u32>>,
    },
    /// Every op must say `+OK`; the first error wins otherwise.
    AllOk,
    /// Sum of integer replies (DEL, EXISTS, DBSIZE…).
    SumInteger,
    /// Concatenate array replies (KEYS).
    ConcatArrays,
    /// The first op's reply, after all succeeded (SCRIPT LOAD).
    First,
    /// The first reply that is not nil (RANDOMKEY).
    AnyNonNil,
    /// Element-wise AND of integer arrays (SCRIPT EXISTS).
    AndArrays,
    /// Flat `[name, count, …]` replies with the counts summed per name (PUBSUB NUMSUB).
    SumPairs,
    /// A merge a family defines that sees every reply, errors included (INFO's sections,
    /// an admin command's all-or-error report).
    Whole(Box<dyn WholeMerge>),
}

pub(crate) fn is_error(reply: &[u8]) -> bool {
    matches!(reply.first(), Some(b'-') | Some(b'!'))
}

pub(crate) fn is_nil(reply: &[u8]) -> bool {
    reply == b"$-1\r\n" || reply == b"*-1\r\n" || reply == b"_\r\n"
}

/// Combine the replies of a finished fan-out (`replies[i]` from part `i`) into `out`. Any
/// error reply (or an unexpected reply shape) becomes the whole reply, as a single Redis
/// command would fail.
pub(crate) fn write(merge: Merge, replies: &[Bytes], out: &mut BytesMut) {
    // INFO answers even when a primary does not; admin commands say which nodes failed.
    if let Merge::Whole(whole) = &merge {
        return whole.write(replies, out);
    }
    if let Some(err) = replies.iter().find(|r| is_error(r)) {
        out.extend_from_slice(err);
        return;
    }
    let bad_shape = || Bytes::from_static(crate::replies::UNEXPECTED_REPLY);
    match merge {
        Merge::Mget { total, positions } => {
            let mut slots: Vec<Bytes> = vec![Bytes::new(); total];
            for (reply, pos) in replies.iter().zip(&positions) {
                match aggregate_children(reply) {
                    Some(children) if children.len() == pos.len() => {
                        for (child, &p) in children.into_iter().zip(pos) {
                            slots[p as usize] = child;
                        }
                    }
                    _ => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::array_header(out, total);
            for s in slots {
                out.extend_from_slice(&s);
            }
        }
        Merge::AllOk => out.extend_from_slice(crate::replies::OK),
        Merge::SumInteger => {
            let mut sum: i64 = 0;
            for r in replies {
                match parse_integer(r) {
                    Some(n) => sum = sum.saturating_add(n),
                    None => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::integer(out, sum);
        }
        Merge::ConcatArrays => {
            let mut all = Vec::new();
            for r in replies {
                match aggregate_children(r) {
                    Some(children) => all.extend(children),
                    None => return out.extend_from_slice(&bad_shape()),
                }
            }
            encode::array_header(out, all.len());
            for c in all {
                out.extend_from_slice(&c);
            }
        }
        Merge::First => {
            out.extend_from_slice(replies.first().map(|b| &b[..]).unwrap_or(b"$-1\r\n"))
        }
        Merge::AnyNonNil => {
            // RANDOMKEY: a random primary's random key, not always the first primary's.
            let found: Vec<&Bytes> = replies.iter().filter(|r| !is_nil(r)).collect();
            let pick = match found.len() {
                0 => replies.first(),
                n => Some(found[random_below(n)]),
            };
            out.extend_from_slice(pick.map(|b| &b[..]).unwrap_or(b"$-1\r\n"));
        }
        Merge::AndArrays => {
            let mut acc: Option<Vec<i64>> = None;
            for r in replies {
                let Some(children) = aggregate_children(r) else {
                    return out.extend_from_slice(&bad_shape());
                };
                let vals: Option<Vec<i64>> = children.iter().map(|c| parse_integer(c)).collect();
                let Some(vals) = vals else {
                    return out.extend_from_slice(&bad_shape());
                };
                acc = Some(match acc {
                    None => vals,
                    Some(a) if a.len() == vals.len() => {
                        a.iter().zip(&vals).map(|(x, y)| (*x).min(*y)).collect()
                    }
                    Some(_) => return out.extend_from_slice(&bad_shape()),
                });
            }
            let acc = acc.unwrap_or_default();
            encode::array_header(out, acc.len());
            for v in acc {
                encode::integer(out, v);
            }
        }
        Merge::SumPairs => match sum_pairs(replies) {
            Some((names, counts)) => {
                // Keep the node's aggregate type (a RESP3 map stays a map).
                if replies.first().is_some_and(|r| r.starts_with(b"%")) {
                    encode::map_header(out, names.len());
                } else {
                    encode::array_header(out, names.len() * 2);
                }
                for (name, count) in names.iter().zip(counts) {
                    out.extend_from_slice(name);
                    encode::integer(out, count);
                }
            }
            None => out.extend_from_slice(&bad_shape()),
        },
        // Merged before the error check above; kept total so no input can panic here.
        Merge::Whole(whole) => whole.write(replies, out),
    }
}

/// `[name, count, …]` replies summed per name, in the first reply's order (the client's
/// arguments); `None` when the replies disagree on the names or are not such pairs.
fn sum_pairs(replies: &[Bytes]) -> Option<(Vec<Bytes>, Vec<i64>)> {
    let mut names: Vec<Bytes> = Vec::new();
    let mut counts: Vec<i64> = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        let children = aggregate_children(reply)?;
        if children.len() % 2 != 0 || (i > 0 && children.len() != names.len() * 2) {
            return None;
        }
        for (j, pair) in children.chunks(2).enumerate() {
            if i == 0 {
                names.push(pair[0].clone());
                counts.push(0);
            } else if pair[0] != names[j] {
                return None;
            }
            counts[j] = counts[j].saturating_add(parse_integer(&pair[1])?);
        }
    }
    Some((names, counts))
}

/// A random index below `n` (`n > 0`), from std's randomly keyed hasher.
fn random_below(n: usize) -> usize {
    use std::hash::BuildHasher;
    let random = std::collections::hash_map::RandomState::new().hash_one(n);
    (random % n as u64) as usize
}

#[cfg(test)]
mod tests;
