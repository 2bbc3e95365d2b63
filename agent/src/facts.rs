//! Host facts: what the host is (name, OS, kernel, CPU, memory, DMI identity, boot time,
//! machine ID, virtualisation), sent with every report.
//!
//! Facts are best effort by contract (`HostFacts`: "fields the agent cannot read are left
//! empty"): nothing here returns an error or panics, an unreadable field is just empty or 0.
//! That is deliberate: a locked-down DMI serial (`product_serial` is readable by root only)
//! or a missing `/etc/os-release` must never cost the host its report.
//!
//! Sources: `/proc/sys/kernel/{hostname,osrelease}` (on the live host falling back to
//! `uname(2)`), `/etc/os-release` then `/usr/lib/os-release` (os-release(5)),
//! `/proc/cpuinfo`, `/proc/stat`, `/proc/meminfo`, `/sys/class/dmi/id/*` and
//! `/etc/machine-id` (machine-id(5); `/var/lib/dbus/machine-id` on systems without it).

use std::collections::BTreeSet;
use std::path::Path;

use vigil_proto::v1::HostFacts;

use crate::probe::{cpu, uptime};
use crate::read;
use crate::root::HostRoot;

/// Collects the facts of the host at `root`. Never fails; see the module doc.
pub fn collect(root: &HostRoot, agent_version: &str) -> HostFacts {
    let uname = root.is_live().then(rustix::system::uname);
    let uname_field = |field: fn(&rustix::system::Uname) -> &std::ffi::CStr| {
        uname.as_ref().map(|uname| field(uname).to_string_lossy().into_owned()).unwrap_or_default()
    };

    let os_release = read_text(&root.etc("os-release"))
        .or_else(|| read_text(&root.path("/usr/lib/os-release")))
        .map(|text| parse_os_release(&text))
        .unwrap_or_default();
    let cpuinfo =
        read_text(&root.proc("cpuinfo")).map(|text| parse_cpuinfo(&text)).unwrap_or_default();
    let stat = read_text(&root.proc("stat")).and_then(|text| cpu::parse_stat(&text));
    let logical_cpus = stat
        .as_ref()
        .map(|stat| stat.logical_cpus)
        .filter(|cpus| *cpus > 0)
        .unwrap_or(cpuinfo.processors);
    let dmi = |file: &str| read_value(&root.sys("class/dmi/id").join(file));
    let machine_vendor = dmi("sys_vendor");
    let machine_model = dmi("product_name");

    HostFacts {
        hostname: read_value(&root.proc("sys/kernel/hostname"))
            .or_not_empty(|| uname_field(rustix::system::Uname::nodename)),
        os_name: os_release.pretty_name,
        os_version: os_release.version_id,
        kernel: read_value(&root.proc("sys/kernel/osrelease"))
            .or_not_empty(|| uname_field(rustix::system::Uname::release)),
        architecture: if root.is_live() {
            uname_field(rustix::system::Uname::machine)
        } else {
            // A captured tree does not say; the agent's own build target is the best guess
            // (an agent in a container runs on the host's kernel and CPU).
            std::env::consts::ARCH.to_owned()
        },
        cpu_model: cpuinfo.model,
        cpu_cores: logical_cpus,
        cpu_sockets: cpuinfo.sockets,
        memory_total_bytes: read_text(&root.proc("meminfo"))
            .and_then(|text| read::parse_key_values(&text).get("MemTotal").copied())
            .map(|kb| kb.saturating_mul(1024))
            .unwrap_or(0),
        virtualization: virtualization(&machine_vendor, &machine_model).to_owned(),
        machine_vendor,
        machine_model,
        machine_serial: dmi("product_serial"),
        bios_vendor: dmi("bios_vendor"),
        bios_version: dmi("bios_version"),
        bios_date: dmi("bios_date"),
        boot_time_unix_ms: uptime::boot_time_unix_ms(root).unwrap_or(0),
        agent_version: agent_version.to_owned(),
        machine_id: read_value(&root.etc("machine-id"))
            .or_not_empty(|| read_value(&root.path("/var/lib/dbus/machine-id"))),
    }
}

trait OrNotEmpty {
    fn or_not_empty(self, fallback: impl FnOnce() -> String) -> String;
}

impl OrNotEmpty for String {
    fn or_not_empty(self, fallback: impl FnOnce() -> String) -> String {
        if self.is_empty() { fallback() } else { self }
    }
}

fn read_text(path: &Path) -> Option<String> {
    match read::read_string(path) {
        Ok(text) => Some(text),
        Err(err) => {
            tracing::debug!(%err, "host fact not readable");
            None
        }
    }
}

/// A trimmed single value, empty when unreadable.
fn read_value(path: &Path) -> String {
    read_text(path).map(|text| text.trim().to_owned()).unwrap_or_default()
}

/// The two os-release fields the report carries.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct OsRelease {
    pub pretty_name: String,
    pub version_id: String,
}

/// Parses os-release(5): `KEY=value` lines, values optionally in single or double quotes,
/// with backslash escapes inside double quotes; comments and blank lines ignored.
pub(crate) fn parse_os_release(text: &str) -> OsRelease {
    let mut release = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(value.trim());
        match key.trim() {
            "PRETTY_NAME" => release.pretty_name = value,
            "VERSION_ID" => release.version_id = value,
            _ => {}
        }
    }
    release
}

fn unquote(value: &str) -> String {
    if let Some(inner) = value.strip_prefix('\'').and_then(|rest| rest.strip_suffix('\'')) {
        return inner.to_owned();
    }
    let Some(inner) = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(escaped) = chars.next()
        {
            out.push(escaped);
            continue;
        }
        out.push(c);
    }
    out
}

/// What the facts need from `/proc/cpuinfo`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuInfo {
    /// The first CPU's model name.
    pub model: String,
    /// Distinct `physical id` values; 0 when the kernel does not print them (most non-x86).
    pub sockets: u32,
    /// `processor` entries (logical CPUs), the fallback for the count in `/proc/stat`.
    pub processors: u32,
}

/// Parses `/proc/cpuinfo`. The model comes from `model name` (x86, recent arm64), else
/// `Processor` (older ARM), `cpu model` (MIPS) or `cpu` (POWER).
pub(crate) fn parse_cpuinfo(text: &str) -> CpuInfo {
    const MODEL_KEYS: [&str; 4] = ["model name", "Processor", "cpu model", "cpu"];
    let mut model: Option<(usize, String)> = None;
    let mut physical_ids = BTreeSet::new();
    let mut processors = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => processors += 1,
            "physical id" => {
                physical_ids.insert(value.to_owned());
            }
            _ => {}
        }
        if let Some(rank) = MODEL_KEYS.iter().position(|wanted| *wanted == key)
            && !value.is_empty()
            && model.as_ref().is_none_or(|(best, _)| rank < *best)
        {
            model = Some((rank, value.to_owned()));
        }
    }
    CpuInfo {
        model: model.map(|(_, model)| model).unwrap_or_default(),
        sockets: u32::try_from(physical_ids.len()).unwrap_or(u32::MAX),
        processors,
    }
}

/// Virtualisation as far as DMI tells: the hypervisor vendors' fixed `sys_vendor` and
/// `product_name` strings (the same ones systemd-detect-virt matches in
/// `src/basic/virt.c` `detect_vm_dmi_vendor`). Empty for bare metal or unknown.
pub(crate) fn virtualization(sys_vendor: &str, product_name: &str) -> &'static str {
    const KNOWN: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("QEMU", "kvm"),
        ("OpenStack", "kvm"),
        ("VMware", "vmware"),
        ("VMW", "vmware"),
        ("innotek GmbH", "virtualbox"),
        ("VirtualBox", "virtualbox"),
        ("Oracle Corporation", "virtualbox"),
        ("Xen", "xen"),
        ("Microsoft Corporation", "hyperv"),
        ("Amazon EC2", "amazon"),
        ("Google", "google"),
        ("Parallels", "parallels"),
        ("Bochs", "bochs"),
    ];
    for (needle, name) in KNOWN {
        if sys_vendor.starts_with(needle) || product_name.starts_with(needle) {
            // Microsoft makes hardware too (Surface); only its VM product means Hyper-V.
            if *name == "hyperv" && !product_name.starts_with("Virtual Machine") {
                continue;
            }
            // Oracle sells servers too; VirtualBox says so in product_name.
            if *needle == "Oracle Corporation" && !product_name.starts_with("VirtualBox") {
                continue;
            }
            return name;
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quoting() {
        let release = parse_os_release(
            "# comment\nNAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n\
             VERSION_ID=\"12\"\n",
        );
        assert_eq!(release.pretty_name, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(release.version_id, "12");
        let release = parse_os_release("PRETTY_NAME='Alpine Linux v3.19'\nVERSION_ID=3.19.1\n");
        assert_eq!(release.pretty_name, "Alpine Linux v3.19");
        assert_eq!(release.version_id, "3.19.1");
        let release = parse_os_release("PRETTY_NAME=\"say \\\"hi\\\" \\$x\"\n");
        assert_eq!(release.pretty_name, "say \"hi\" $x");
        assert_eq!(parse_os_release("garbage\n"), OsRelease::default());
    }

    #[test]
    fn cpuinfo_model_and_sockets() {
        let info = parse_cpuinfo(
            "processor\t: 0\nmodel name\t: Xeon\nphysical id\t: 0\n\n\
             processor\t: 1\nmodel name\t: Xeon\nphysical id\t: 1\n\n\
             processor\t: 2\nmodel name\t: Xeon\nphysical id\t: 1\n",
        );
        assert_eq!(info, CpuInfo { model: "Xeon".into(), sockets: 2, processors: 3 });
        // Older ARM: no physical id, model under "Processor".
        let info = parse_cpuinfo(
            "Processor\t: ARMv7 Processor rev 4 (v7l)\nprocessor\t: 0\nprocessor\t: 1\n",
        );
        assert_eq!(info.model, "ARMv7 Processor rev 4 (v7l)");
        assert_eq!(info.sockets, 0);
        assert_eq!(info.processors, 2);
    }

    #[test]
    fn virtualization_from_dmi() {
        assert_eq!(virtualization("QEMU", "Standard PC (Q35 + ICH9, 2009)"), "kvm");
        assert_eq!(virtualization("VMware, Inc.", "VMware Virtual Platform"), "vmware");
        assert_eq!(virtualization("Microsoft Corporation", "Virtual Machine"), "hyperv");
        assert_eq!(virtualization("Microsoft Corporation", "Surface Laptop 5"), "");
        assert_eq!(virtualization("innotek GmbH", "VirtualBox"), "virtualbox");
        assert_eq!(virtualization("Xen", "HVM domU"), "xen");
        assert_eq!(virtualization("Amazon EC2", "m5.large"), "amazon");
        assert_eq!(virtualization("Dell Inc.", "PowerEdge R6515"), "");
        assert_eq!(virtualization("", ""), "");
    }

    #[test]
    fn empty_root_gives_empty_facts() {
        let dir = tempfile::tempdir().unwrap();
        let facts = collect(&HostRoot::new(dir.path().to_path_buf()), "1.2.3");
        assert_eq!(
            facts,
            HostFacts {
                architecture: std::env::consts::ARCH.to_owned(),
                agent_version: "1.2.3".to_owned(),
                ..HostFacts::default()
            }
        );
    }
}
