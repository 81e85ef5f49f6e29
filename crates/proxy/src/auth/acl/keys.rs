//! The keys of a command line and the key-spec flags of each, found the way Redis 7.0's ACL
//! check finds them (`getKeysFromCommandWithSpecs`): the key specs when they are reliable
//! (none has `variable_flags`), else the command's own key finder, whose flags differ. Both
//! walks are `slotgate_commands`' ([`Command::key_spans`], [`visit_finder_keys`]), the ones
//! routing uses: this only decides which applies and visits the keys in Redis's order.
//! Never allocates.

use slotgate_commands::{key_flag, visit_finder_keys, ArgSource, Command};

use super::KeyPerm;

/// The index of the first key for which `allowed(key, access it needs)` says no, in the
/// order Redis checks keys.
pub(super) fn first_denied_key<A, F>(cmd: &Command, args: &A, mut allowed: F) -> Option<usize>
where
    A: ArgSource + ?Sized,
    F: FnMut(&[u8], KeyPerm) -> bool,
{
    let mut denied = None;
    visit_keys(cmd, args, |index, flags| {
        if allowed(args.arg(index), KeyPerm::for_key_flags(flags)) {
            true
        } else {
            denied = Some(index);
            false
        }
    });
    denied
}

/// Calls `visit(index, key_flags)` for each key in Redis's order until it returns `false`.
pub(super) fn visit_keys<A: ArgSource + ?Sized>(
    cmd: &Command,
    args: &A,
    mut visit: impl FnMut(usize, u32) -> bool,
) {
    let mut has_key_spec = false;
    let mut variable_flags = false;
    for spec in cmd.key_specs {
        has_key_spec |= spec.flags & key_flag::NOT_KEY == 0;
        variable_flags |= spec.flags & key_flag::VARIABLE_FLAGS != 0;
    }
    if has_key_spec && !variable_flags {
        if let Ok(spans) = cmd.key_spans(args, false) {
            for span in spans.iter() {
                let mut i = span.first;
                while i <= span.last {
                    if !visit(i, span.flags) {
                        return;
                    }
                    i += span.step;
                }
            }
            return;
        }
    }
    visit_finder_keys(cmd, args, visit);
}

#[cfg(test)]
pub(super) fn collect_keys<A: ArgSource + ?Sized>(cmd: &Command, args: &A) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    visit_keys(cmd, args, |i, flags| {
        out.push((i, flags));
        true
    });
    out
}
