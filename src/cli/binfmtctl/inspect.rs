//! `binfmtctl inspect`: a program's architecture and the handler the kernel would run it with.

use anyhow::Result;
use serde::Serialize;

use super::{InspectArgs, Settings};
use crate::binfmt::Kernel;
use crate::cli::Exit;
use crate::cli::printer::Printer;

#[derive(Serialize)]
struct InspectOut {
    #[serde(flatten)]
    info: crate::elf::ElfInfo,
    /// The entry the kernel would use, "native", or "none".
    runs_with: String,
}

/// Runs `inspect`.
pub fn run(s: &Settings, a: &InspectArgs) -> Result<Exit> {
    let p = &s.printer;
    let mut outs = Vec::new();
    let mut failed = false;
    for f in &a.files {
        match crate::elf::inspect(f) {
            Ok(info) => {
                let name = f.file_name().and_then(|n| n.to_str());
                let runs_with = runs_with(&s.kernel, &info, name);
                outs.push(InspectOut { info, runs_with });
            }
            Err(e) => {
                p.error(&e);
                failed = true;
            }
        }
    }
    if a.json {
        p.json(&outs);
    } else {
        for (i, o) in outs.iter().enumerate() {
            if i > 0 {
                p.data("");
            }
            print(p, o);
        }
    }
    Ok(if failed { Exit::Failure } else { Exit::Success })
}

/// The handler, else "native" by the host's one rule, else what exec would say.
fn runs_with(kernel: &dyn Kernel, info: &crate::elf::ElfInfo, name: Option<&str>) -> String {
    if let Some(e) = kernel.handler_for(&info.header, name) {
        return format!("{} ({})", e.name, e.interpreter);
    }
    match info.target() {
        Some(t) if kernel.host().runs_natively(t) => "native".into(),
        _ => "none: exec would fail with `exec format error`".into(),
    }
}

fn print(p: &Printer, o: &InspectOut) {
    let i = &o.info;
    let linking = if i.is_static {
        if i.static_pie {
            "static (static-pie)".to_string()
        } else {
            "static".to_string()
        }
    } else {
        format!(
            "dynamic, interpreter {}",
            i.interpreter.as_deref().unwrap_or("?")
        )
    };
    p.data(i.path.display());
    p.data(format!(
        "  architecture: {} (e_machine {:#x})",
        i.machine_name, i.machine
    ));
    p.data(format!("  class:        ELF{}", i.class));
    p.data(format!(
        "  endianness:   {}",
        if i.endian == crate::arch::Endian::Little {
            "little"
        } else {
            "big"
        }
    ));
    p.data(format!("  type:         {}", i.kind));
    p.data(format!("  linking:      {linking}"));
    if !i.needed.is_empty() {
        p.data(format!("  needs:        {}", i.needed.join(", ")));
    }
    p.data(format!(
        "  qemu target:  {}",
        i.target.as_deref().unwrap_or("unknown")
    ));
    p.data(format!(
        "  platform:     {}",
        i.platform
            .as_ref()
            .map_or("unknown".to_string(), |p| p.to_string())
    ));
    p.data(format!("  runs with:    {}", o.runs_with));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binfmt::fake::FakeKernel;

    #[test]
    fn native_follows_the_hosts_rule() {
        let arm = crate::binfmt::probe::program("arm").unwrap();
        let info = crate::elf::inspect_bytes(std::path::Path::new("p"), arm).unwrap();
        let with = FakeKernel::new("aarch64");
        assert_eq!(runs_with(&with, &info, None), "native");
        let without = FakeKernel::new("aarch64").without_compat();
        assert!(runs_with(&without, &info, None).starts_with("none"));
        let x86 = FakeKernel::new("x86_64");
        assert!(runs_with(&x86, &info, None).starts_with("none"));
    }
}
