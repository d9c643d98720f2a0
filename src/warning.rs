//! Things the user should know that did not fail the operation, as one typed enum: what went
//! differently in an unpack, a run, a commit, an emulator's resolution or a handler's
//! registration. Reports carry these values; the CLI prints their text (and JSON output shows
//! the same text). The sandbox's init sends them over its pipe as they are.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "warning", rename_all = "kebab-case")]
pub enum Warning {
    /// A device node in a layer was not made (rootless).
    #[error("skipped device node /{} (needs real root)", .path.display())]
    SkippedDevice {
        /// The path in the layer.
        path: PathBuf,
    },
    /// A tar entry of a kind no file system holds (a GNU volume label, say) was skipped.
    #[error("skipped /{} of tar type {kind}", .path.display())]
    SkippedEntry {
        /// The path in the layer.
        path: PathBuf,
        /// The tar entry type.
        kind: String,
    },
    /// An xattr of a layer was not applied (overlayfs's own, or not allowed).
    #[error("dropped xattr {name} from the layer")]
    DroppedXattr {
        /// The xattr.
        name: String,
    },
    /// A file's owner could not be set.
    #[error("could not give /{} to {uid}:{gid} ({reason})", .path.display())]
    Owner {
        /// The path in the layer.
        path: PathBuf,
        /// The user.
        uid: u64,
        /// The group.
        gid: u64,
        /// What the kernel said.
        reason: String,
    },
    /// An xattr could not be set.
    #[error("could not set xattr {name} on /{} ({reason})", .path.display())]
    Xattr {
        /// The xattr.
        name: String,
        /// The path in the layer.
        path: PathBuf,
        /// What the kernel said.
        reason: String,
    },
    /// The copying snapshotter could not copy an entry of the tree.
    #[error("{} not copied: {reason}", .path.display())]
    NotCopied {
        /// The entry.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A host file the sandbox provides (resolv.conf, hosts) was not bound in.
    #[error("/{} not provided: {reason}", .path.display())]
    NotProvided {
        /// The path inside.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The step runs in the copying snapshotter.
    #[error("{reason}; using the copying snapshotter (slower: it keeps a whole copy of the tree)")]
    CopySnapshotter {
        /// Why overlayfs cannot hold it.
        reason: String,
    },
    /// The command never ran.
    #[error("cannot run the command: {error}")]
    CommandDidNotRun {
        /// Why.
        error: String,
    },
    /// The command failed: its changes are not a step.
    #[error("the command failed (exit {code}); this step's changes were discarded")]
    StepDiscarded {
        /// Its status.
        code: i32,
    },
    /// A multi-platform commit of platforms built by different steps.
    #[error(
        "{a} and {b} were built by different steps ({count_a} vs {count_b}: {difference}); their images differ"
    )]
    PlatformsDiffer {
        /// One platform.
        a: String,
        /// The other.
        b: String,
        /// Steps of `a`.
        count_a: usize,
        /// Steps of `b`.
        count_b: usize,
        /// Where they part.
        difference: String,
    },
    /// A cached emulator failed its check.
    #[error("{why}; fetching it again")]
    CacheDamaged {
        /// What is wrong with it.
        why: String,
    },
    /// A dry run names an emulator a real run would fetch.
    #[error(
        "no static emulator for {target} is installed or cached; a real run fetches it from the Debian archive (suite {suite})"
    )]
    WouldFetch {
        /// The target.
        target: String,
        /// The suite.
        suite: String,
    },
    /// The emulator does not honour P, so the handler has F alone.
    #[error(
        "the emulator `{interpreter}` ignores the P flag (it lost the program's argv[0] when tried), so the handler has F alone: programs that re-execute themselves by name (busybox applets) misbehave under it; QEMU 6.1 or later honours P (`binfmtctl fetch {target}` gets one)"
    )]
    IgnoresPreserveArgv0 {
        /// The emulator.
        interpreter: String,
        /// Its target.
        target: String,
    },
    /// A newer overlapping entry runs these programs instead.
    #[error(
        "entry `{entry}` (interpreter {interpreter}) also matches {target} programs and was registered later, so the kernel uses it instead"
    )]
    Shadowed {
        /// The other entry.
        entry: String,
        /// Its interpreter.
        interpreter: String,
        /// Our target.
        target: String,
    },
    /// Registered, but the ownership record could not be written.
    #[error(
        "registered, but could not record ownership ({reason}); `binfmtctl uninstall` will need `--force` for it"
    )]
    OwnershipNotRecorded {
        /// Why.
        reason: String,
    },
    /// An entry of that name is not ours: left in place.
    #[error(
        "`{name}` was not registered by binfmtctl (interpreter {interpreter}); left in place. Remove it with the tool that added it, or rerun with `--force`"
    )]
    NotOurs {
        /// The entry.
        name: String,
        /// Its interpreter.
        interpreter: String,
    },
    /// Rootless with only one ID mapped.
    #[error(
        "no subordinate IDs for `{user}` (/etc/subuid, /etc/subgid) or no newuidmap: only root (your own ID) exists inside, so files of other owners in images become root's and `--user` other than root fails; `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` fixes that"
    )]
    SingleIdMap {
        /// The user.
        user: String,
    },
    /// newuidmap/newgidmap refused the ranges.
    #[error("newuidmap/newgidmap refused the subordinate ID ranges; falling back to a single ID")]
    IdMapRefused,
}

/// Serialises warnings as their text (what JSON reports show).
pub fn as_text<S: serde::Serializer>(ws: &[Warning], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ws.iter().map(ToString::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_wire_form() {
        let w = Warning::StepDiscarded { code: 3 };
        assert_eq!(
            w.to_string(),
            "the command failed (exit 3); this step's changes were discarded"
        );
        let wire = serde_json::to_string(&w).unwrap();
        assert_eq!(serde_json::from_str::<Warning>(&wire).unwrap(), w);
        #[derive(Serialize)]
        struct R {
            #[serde(serialize_with = "as_text")]
            w: Vec<Warning>,
        }
        let v = serde_json::to_value(R { w: vec![w] }).unwrap();
        assert_eq!(
            v["w"][0],
            "the command failed (exit 3); this step's changes were discarded"
        );
    }
}
