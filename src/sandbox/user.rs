//! `--user` resolution against the image's own `/etc/passwd` and `/etc/group` (read inside the
//! sandbox, after pivot_root).

/// A resolved user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// User ID.
    pub uid: u32,
    /// Primary group ID.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Home directory (from passwd), if known.
    pub home: Option<String>,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split(':').collect::<Vec<_>>())
}

/// Resolves `user[:group]` (names or numbers) with the given passwd and group files' text.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Resolved, String> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let entry = passwd_entries(passwd).find(|f| f.len() >= 7 && (f[0] == user || f[2] == user));
    let (uid, mut gid, name, home) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse::<u32>()
                .map_err(|_| format!("bad uid for `{user}` in /etc/passwd"))?,
            f[3].parse::<u32>().unwrap_or(0),
            Some(f[0].to_string()),
            Some(f[5].to_string()),
        ),
        (None, Ok(n)) => (n, n, None, None),
        (None, Err(_)) => return Err(format!("user `{user}` is not in the image's /etc/passwd")),
    };
    if let Some(g) = grp {
        gid = match passwd_entries(group).find(|f| f.len() >= 3 && (f[0] == g || f[2] == g)) {
            Some(f) => f[2]
                .parse()
                .map_err(|_| format!("bad gid for `{g}` in /etc/group"))?,
            None => g
                .parse()
                .map_err(|_| format!("group `{g}` is not in the image's /etc/group"))?,
        };
    }
    let mut groups = vec![gid];
    if let Some(n) = &name {
        for f in passwd_entries(group).filter(|f| f.len() >= 4) {
            if f[3].split(',').any(|m| m == n)
                && let Ok(g) = f[2].parse::<u32>()
                && !groups.contains(&g)
            {
                groups.push(g);
            }
        }
    }
    Ok(Resolved {
        uid,
        gid,
        groups,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000::/home/builder:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:builder\nbuilder:x:1000:\n";

    #[test]
    fn names_numbers_and_groups() {
        let b = resolve("builder", PASSWD, GROUP).unwrap();
        assert_eq!(
            (b.uid, b.gid, b.groups.clone()),
            (1000, 1000, vec![1000, 10])
        );
        assert_eq!(b.home.as_deref(), Some("/home/builder"));
        assert_eq!(resolve("1000:wheel", PASSWD, GROUP).unwrap().gid, 10);
        let n = resolve("4242:4343", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.home), (4242, 4343, None));
        assert!(resolve("nobody-here", PASSWD, GROUP).is_err());
        assert!(resolve("root:nogroup", PASSWD, GROUP).is_err());
    }
}
