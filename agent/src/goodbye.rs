//! Why the agent is stopping, told to the collector in its Goodbye so a planned stop, a reboot
//! or an upgrade does not page anyone. An upgrade is announced by the package scripts (the
//! `upgrade` marker in the state directory, or `VIGIL_GOODBYE_REASON=upgrade`); a reboot is seen
//! from systemd's scheduled-shutdown file or its system state.

use std::path::Path;

use vigil_proto::v1::goodbye::Reason;

use crate::root::HostRoot;

pub fn reason(root: &HostRoot, state_dir: &Path) -> Reason {
    if let Ok(value) = std::env::var("VIGIL_GOODBYE_REASON") {
        match value.trim() {
            "upgrade" => return Reason::Upgrade,
            "reboot" => return Reason::Reboot,
            "stop" => return Reason::Stop,
            _ => {}
        }
    }
    let marker = state_dir.join("upgrade");
    if marker.exists() {
        let _ = std::fs::remove_file(&marker);
        return Reason::Upgrade;
    }
    if root.path("/run/systemd/shutdown/scheduled").exists() || system_stopping(root) {
        return Reason::Reboot;
    }
    Reason::Stop
}

/// systemd's own view: `systemctl is-system-running` prints "stopping" during shutdown.
fn system_stopping(root: &HostRoot) -> bool {
    if !root.is_live() || !Path::new("/run/systemd/system").exists() {
        return false;
    }
    std::process::Command::new("systemctl")
        .arg("is-system-running")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "stopping")
        .unwrap_or(false)
}
