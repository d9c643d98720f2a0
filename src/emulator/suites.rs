//! Debian suites and where each keeps static emulators (`qemu-configs/debian.toml`): the package
//! name and the path inside it differ between suites, and that difference lives in data.

use std::sync::OnceLock;

use serde::Deserialize;

const DEBIAN_TOML: &str = include_str!("../../qemu-configs/debian.toml");

/// One suite's layout.
#[derive(Debug, Clone, Deserialize)]
pub struct Suite {
    /// The suite's codename as the archive's `dists/` names it.
    pub name: String,
    /// Other names for it.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The package holding static emulators.
    pub package: String,
    /// The emulator's path inside the package, with `{target}`.
    pub path: String,
    /// The QEMU version shipped.
    pub qemu: String,
}

impl Suite {
    /// The emulator's path inside the package's data.tar for a target (no leading `/` or `./`).
    pub fn emulator_path(&self, target: &str) -> String {
        self.path.replace("{target}", target)
    }
}

#[derive(Debug, Deserialize)]
struct Raw {
    default: String,
    suite: Vec<Suite>,
}

/// The suites table.
#[derive(Debug)]
pub struct Suites {
    default: String,
    suites: Vec<Suite>,
}

impl Suites {
    /// The compiled-in table.
    pub fn get() -> &'static Suites {
        static S: OnceLock<Suites> = OnceLock::new();
        S.get_or_init(|| {
            let raw: Raw = toml::from_str(DEBIAN_TOML).expect("qemu-configs/debian.toml is valid");
            Suites {
                default: raw.default,
                suites: raw.suite,
            }
        })
    }

    /// The default suite (the newest stable release).
    pub fn default_suite(&self) -> &Suite {
        self.find(&self.default)
            .expect("the default suite is listed")
    }

    /// A suite by name or alias.
    pub fn find(&self, name: &str) -> Option<&Suite> {
        self.suites
            .iter()
            .find(|s| s.name == name || s.aliases.iter().any(|a| a == name))
    }

    /// Resolves a `--suite` value, or explains which suites are known.
    pub fn resolve(&self, name: Option<&str>) -> Result<&Suite, String> {
        match name {
            None => Ok(self.default_suite()),
            Some(n) => self.find(n).ok_or_else(|| {
                format!(
                    "unknown suite `{n}`; known suites: {}",
                    self.suites
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        }
    }

    /// All suites.
    pub fn all(&self) -> &[Suite] {
        &self.suites
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_differ_in_data() {
        let s = Suites::get();
        assert_eq!(s.default_suite().name, "trixie");
        let trixie = s.resolve(Some("stable")).unwrap();
        assert_eq!(trixie.package, "qemu-user");
        assert_eq!(trixie.emulator_path("aarch64"), "usr/bin/qemu-aarch64");
        let bookworm = s.resolve(Some("bookworm")).unwrap();
        assert_eq!(bookworm.package, "qemu-user-static");
        assert_eq!(bookworm.emulator_path("arm"), "usr/bin/qemu-arm-static");
        assert!(s.resolve(Some("bookworm-backports")).is_ok());
        assert!(s.resolve(Some("sid")).unwrap_err().contains("known suites"));
    }
}
