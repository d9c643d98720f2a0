//! The base directories default paths follow (the XDG base directory variables and `HOME`),
//! as the front end read them once: the store, the emulator cache and the ownership records
//! default to system directories as root, else to these.

use std::path::PathBuf;

/// Where a user's data, cache and runtime files go.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseDirs {
    /// Real root in the initial user namespace: the system directories.
    pub privileged: bool,
    /// `$HOME`.
    pub home: Option<PathBuf>,
    /// `$XDG_DATA_HOME` (absolute only).
    pub data_home: Option<PathBuf>,
    /// `$XDG_CACHE_HOME` (absolute only).
    pub cache_home: Option<PathBuf>,
    /// `$XDG_RUNTIME_DIR`.
    pub runtime_dir: Option<PathBuf>,
    /// The effective user ID (names a fallback in `/tmp`).
    pub uid: u32,
}

impl BaseDirs {
    /// `system` as root, else `$XDG_DATA_HOME/name` (else `~/.local/share/name`).
    pub fn data(&self, system: &str, name: &str) -> PathBuf {
        self.user(system, name, self.data_home.as_ref(), ".local/share")
    }

    /// `system` as root, else `$XDG_CACHE_HOME/name` (else `~/.cache/name`).
    pub fn cache(&self, system: &str, name: &str) -> PathBuf {
        self.user(system, name, self.cache_home.as_ref(), ".cache")
    }

    /// `system` as root, else `$XDG_RUNTIME_DIR/name` (else `/tmp/name-<uid>`).
    pub fn runtime(&self, system: &str, name: &str) -> PathBuf {
        if self.privileged {
            return PathBuf::from(system);
        }
        match &self.runtime_dir {
            Some(d) => d.join(name),
            None => PathBuf::from(format!("/tmp/{name}-{}", self.uid)),
        }
    }

    fn user(&self, system: &str, name: &str, xdg: Option<&PathBuf>, under_home: &str) -> PathBuf {
        if self.privileged {
            return PathBuf::from(system);
        }
        xdg.filter(|p| p.is_absolute())
            .cloned()
            .or_else(|| self.home.as_ref().map(|h| h.join(under_home)))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let root = BaseDirs {
            privileged: true,
            ..BaseDirs::default()
        };
        assert_eq!(root.data("/var/lib/x", "x"), PathBuf::from("/var/lib/x"));
        let user = BaseDirs {
            home: Some("/home/u".into()),
            cache_home: Some("relative".into()),
            runtime_dir: Some("/run/user/1000".into()),
            uid: 1000,
            ..BaseDirs::default()
        };
        assert_eq!(
            user.data("/s", "x"),
            PathBuf::from("/home/u/.local/share/x")
        );
        assert_eq!(user.cache("/s", "x"), PathBuf::from("/home/u/.cache/x"));
        assert_eq!(user.runtime("/s", "x"), PathBuf::from("/run/user/1000/x"));
        let bare = BaseDirs {
            uid: 7,
            ..BaseDirs::default()
        };
        assert_eq!(bare.runtime("/s", "x"), PathBuf::from("/tmp/x-7"));
        assert_eq!(bare.data("/s", "x"), PathBuf::from("/tmp/x"));
    }
}
