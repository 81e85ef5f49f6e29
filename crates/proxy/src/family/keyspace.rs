//! INFO's `# Keyspace` section for the whole cluster (see [`crate::family::info`]): the
//! primaries' `dbN:keys=…,expires=…,avg_ttl=…` lines summed per database, where `avg_ttl` is
//! the average of the primaries' `avg_ttl` weighted by their `expires` (a primary reporting
//! 0, Redis's "not sampled yet", does not weigh). Replicas are never asked.

/// The `# Keyspace` section merged from the primaries' keyspace lines (`bodies[i]`: one
/// primary's lines of that section).
pub(crate) fn merged(bodies: &[Vec<&str>]) -> String {
    let mut dbs = Vec::new();
    for body in bodies {
        add_keyspace(&mut dbs, &body.join("\r\n"));
    }
    render(&mut dbs)
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

/// `# Keyspace` with one line per database, in database order, like Redis.
fn render(dbs: &mut [DbSum]) -> String {
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
    out.push_str("\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged_of(nodes: &[&str]) -> String {
        let bodies: Vec<Vec<&str>> = nodes
            .iter()
            .map(|t| t.lines().filter(|l| !l.starts_with('#')).collect())
            .collect();
        merged(&bodies)
    }

    #[test]
    fn keys_and_expires_are_summed_avg_ttl_weighted() {
        let text = merged_of(&[
            "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=1000\r\n",
            "# Keyspace\r\ndb0:keys=5,expires=6,avg_ttl=3000\r\n",
            "# Keyspace\r\ndb0:keys=1,expires=4,avg_ttl=0\r\n",
            "# Keyspace\r\n",
        ]);
        assert_eq!(
            text,
            "# Keyspace\r\ndb0:keys=16,expires=12,avg_ttl=2500\r\n\r\n"
        );
    }

    #[test]
    fn an_empty_cluster_has_an_empty_section() {
        assert_eq!(
            merged_of(&["# Keyspace\r\n", "# Keyspace\r\n"]),
            "# Keyspace\r\n\r\n"
        );
    }

    #[test]
    fn unknown_fields_are_summed_in_order() {
        let text = merged_of(&[
            "# Keyspace\r\ndb0:keys=1,expires=1,avg_ttl=10,subexpiry=0\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n",
            "# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=30,subexpiry=1\r\n",
        ]);
        assert_eq!(
            text,
            "# Keyspace\r\ndb0:keys=3,expires=2,avg_ttl=20,subexpiry=1\r\ndb2:keys=1,expires=0,avg_ttl=0\r\n\r\n"
        );
    }
}
