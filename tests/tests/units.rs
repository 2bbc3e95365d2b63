//! The systemd units in `packaging/systemd/` as systemd itself judges them:
//! `systemd-analyze verify` must accept both without a warning (in a scratch root holding the
//! real binaries at the units' `ExecStart=` paths and the host's own unit library), and
//! `systemd-analyze security --offline=yes` must rate them within budget: 1.5 for the
//! collector, 3.0 for the agent. The measured figures are printed.
//!
//! Without `systemd-analyze` (found as `$VIGIL_SYSTEMD_ANALYZE`, `/usr/bin/systemd-analyze` or
//! on `PATH`) the tests are skipped loudly, unless `VIGIL_REQUIRE_EXTERNAL=1`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const COLLECTOR_BUDGET: f64 = 1.5;
const AGENT_BUDGET: f64 = 3.0;

fn units_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/systemd")
}

/// `systemd-analyze`, or None (after saying so) when the test should be skipped.
fn systemd_analyze(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("VIGIL_SYSTEMD_ANALYZE")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/usr/bin/systemd-analyze")])
        .chain(
            std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p).map(|d| d.join("systemd-analyze")).collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var("VIGIL_REQUIRE_EXTERNAL").as_deref() != Ok("1"),
            "{test}: systemd-analyze is required (VIGIL_REQUIRE_EXTERNAL=1) but not found; \
             install systemd (Debian: apt-get install systemd)"
        );
        eprintln!(
            "SKIPPED {test}: systemd-analyze not found (set VIGIL_SYSTEMD_ANALYZE or install systemd)"
        );
    }
    found
}

/// A scratch root for `verify --root`: the host's unit library (for the targets the units
/// name), the units under /etc/systemd/system, and the real binaries under /usr/bin.
fn scratch_root(units: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let library = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .expect("the host's systemd unit library (multi-user.target) next to systemd-analyze");
    copy_library(library, &root.path().join("usr/lib/systemd/system"));
    let system = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&system).unwrap();
    for unit in units {
        std::fs::copy(units_dir().join(unit), system.join(unit)).unwrap();
    }
    let bin = root.path().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    for name in ["vigil-agent", "vigil-collector"] {
        std::fs::copy(vigil_e2e::bin(name), bin.join(name)).unwrap();
    }
    root
}

/// Copies a unit directory, keeping symbolic links as links (aliases, masks to /dev/null).
fn copy_library(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(link, &target).unwrap();
        } else if kind.is_dir() {
            copy_library(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn verify(analyze: &Path, root: &Path, unit: &str) -> Output {
    Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(format!("--root={}", root.display()))
        .arg(format!("/etc/systemd/system/{unit}"))
        .output()
        .expect("run systemd-analyze verify")
}

#[test]
fn both_units_pass_systemd_analyze_verify() {
    let Some(analyze) = systemd_analyze("both_units_pass_systemd_analyze_verify") else { return };
    let units = ["vigil-agent.service", "vigil-collector.service"];
    let root = scratch_root(&units);
    for unit in units {
        let out = verify(&analyze, root.path(), unit);
        let stderr = String::from_utf8_lossy(&out.stderr);
        println!("systemd-analyze verify {unit}: {} {stderr}", out.status);
        assert!(out.status.success() && stderr.trim().is_empty(), "{unit}: {stderr}");
    }

    // The check sees what it must: a misspelt key, and a binary missing at ExecStart.
    let system = root.path().join("etc/systemd/system");
    let agent = std::fs::read_to_string(system.join(units[0])).unwrap();
    std::fs::write(system.join(units[0]), agent.replace("NotifyAccess=", "NotifyAcess=")).unwrap();
    let out = verify(&analyze, root.path(), units[0]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotifyAcess"), "{out:?}");
    std::fs::remove_file(root.path().join("usr/bin/vigil-collector")).unwrap();
    let out = verify(&analyze, root.path(), units[1]);
    assert!(!out.status.success(), "verify passed without the collector binary: {out:?}");
}

/// The overall exposure `systemd-analyze security --offline=yes` gives `unit`.
fn exposure(analyze: &Path, unit: &str) -> f64 {
    let out = Command::new(analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(units_dir().join(unit))
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no overall exposure for {unit}: {text}{out:?}"));
    let figure = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no figure in {line:?}"));
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with('✗')).collect();
    println!("systemd-analyze security --offline=yes {unit}: {figure}\n{}", failed.join("\n"));
    figure
}

#[test]
fn collector_unit_exposure_is_within_budget() {
    let Some(analyze) = systemd_analyze("collector_unit_exposure_is_within_budget") else {
        return;
    };
    let figure = exposure(&analyze, "vigil-collector.service");
    assert!(figure <= COLLECTOR_BUDGET, "collector exposure {figure} > {COLLECTOR_BUDGET}");
}

#[test]
fn agent_unit_exposure_is_within_budget() {
    let Some(analyze) = systemd_analyze("agent_unit_exposure_is_within_budget") else { return };
    let figure = exposure(&analyze, "vigil-agent.service");
    assert!(figure <= AGENT_BUDGET, "agent exposure {figure} > {AGENT_BUDGET}");
}
