//! Synthetic host roots whose `/proc/mdstat` a test rewrites: the simplest real fault an agent
//! can report (a RAID1 losing and regaining a member), in the kernel's own format.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Agent, Collector};

/// A healthy RAID1, in the kernel's format.
pub const HEALTHY: &str = "Personalities : [raid1]\n\
md6 : active raid1 sdb2[1] sda2[0]\n      195310144 blocks [2/2] [UU]\n\n\
unused devices: <none>\n";

/// The same array with a failed member, as the node-exporter fixture's md6 shows it.
pub const DEGRADED: &str = "Personalities : [raid1]\n\
md6 : active raid1 sdb2[2](F) sda2[0]\n      195310144 blocks [2/1] [U_]\n\n\
unused devices: <none>\n";

/// `dir/name` with a `proc/mdstat` of `text`.
pub fn root_with(dir: &Path, name: &str, text: &str) -> PathBuf {
    let root = dir.join(name);
    std::fs::create_dir_all(root.join("proc")).expect("create root/proc");
    set(&root, text);
    root
}

/// Replaces `/proc/mdstat` atomically, so the agent never reads half a file.
pub fn set(root: &Path, text: &str) {
    let tmp = root.join("proc/.mdstat.tmp");
    std::fs::write(&tmp, text).expect("write mdstat");
    std::fs::rename(&tmp, root.join("proc/mdstat")).expect("replace mdstat");
}

/// An agent enrolled into `acme/main` reading a healthy root `dir/name` (state in
/// `dir/name-state`), once its first report has arrived; the root, to rewrite its mdstat.
pub async fn healthy_agent(c: &Collector, dir: &Path, name: &str) -> (Agent, PathBuf) {
    let root = root_with(dir, name, HEALTHY);
    let state = dir.join(format!("{name}-state"));
    let agent = Agent::enroll_and_start(c, &state, &["--root", root.to_str().unwrap()]).await;
    let host = agent.host_id();
    c.wait_for("the first report", Duration::from_secs(60), async |c| {
        let h = c.get(&format!("/api/v1/hosts/{host}")).await;
        h["last_seen_unix_ms"].is_i64().then_some(())
    })
    .await;
    (agent, root)
}
