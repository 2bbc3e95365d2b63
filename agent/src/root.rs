//! Where the host is: every `/proc`, `/sys` and `/etc` path the agent reads is built here and
//! nowhere else.
//!
//! A [`HostRoot`] is the directory that stands for the host's `/`. On a normal install it is
//! `/` itself ([`HostRoot::live`]); `--root DIR` points it at another tree, which is how the
//! tests read the captured fixture trees under `agent/tests/fixtures/` and how an agent in a
//! container reads a host mounted at, say, `/host`. Keeping the kernel paths in this one file
//! means a probe cannot accidentally read the agent's own `/proc` when it was asked to read
//! another root (node_exporter `collector/paths.go`, procfs `fs.go` `NewFS(mountPoint)`).
//!
//! Symlinks below the root are resolved by the kernel as usual: relative links (all of sysfs,
//! `/proc/self`) stay inside the root, an absolute link target is resolved against the real `/`.

use std::path::{Path, PathBuf};

/// The host's `/`, possibly relocated.
#[derive(Clone, Debug)]
pub struct HostRoot {
    dir: PathBuf,
}

impl HostRoot {
    /// A host whose `/` is at `dir` (`--root DIR`).
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The host the agent runs on.
    pub fn live() -> Self {
        Self::new(PathBuf::from("/"))
    }

    /// Whether this root is the real `/`. Probes that need the passage of time (CPU usage
    /// needs two samples) or the running kernel (`uname`) only do so on the live root.
    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }

    /// The root directory itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `/proc/<rel>` on the host, e.g. `root.proc("pressure/cpu")`.
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.dir.join("proc").join(strip_slash(rel))
    }

    /// `/sys/<rel>` on the host, e.g. `root.sys("class/hwmon")`.
    pub fn sys(&self, rel: &str) -> PathBuf {
        self.dir.join("sys").join(strip_slash(rel))
    }

    /// `/etc/<rel>` on the host, e.g. `root.etc("os-release")`.
    pub fn etc(&self, rel: &str) -> PathBuf {
        self.dir.join("etc").join(strip_slash(rel))
    }

    /// Any absolute path as the host sees it (a mount point, `/usr/lib/os-release`), mapped
    /// under the root. `path("/")` is the root directory.
    pub fn path(&self, abs_on_host: impl AsRef<Path>) -> PathBuf {
        let abs = abs_on_host.as_ref();
        match abs.strip_prefix("/") {
            Ok(rel) if rel.as_os_str().is_empty() => self.dir.clone(),
            Ok(rel) => self.dir.join(rel),
            Err(_) => self.dir.join(abs),
        }
    }

    /// The host's view of a path made by this root (`/proc/stat` rather than
    /// `/srv/fixtures/x/proc/stat`), for messages that must not depend on where the root is.
    pub fn host_view(&self, path: &Path) -> String {
        match path.strip_prefix(&self.dir) {
            Ok(rel) => format!("/{}", rel.display()),
            Err(_) => path.display().to_string(),
        }
    }

    /// `/sys/<rel>` relative to the sysfs root (`class/hwmon/hwmon0/temp1_input`), the form
    /// `TemperatureSensor.source` uses.
    pub fn sys_relative(&self, path: &Path) -> String {
        let sys = self.dir.join("sys");
        match path.strip_prefix(&sys) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => self.host_view(path),
        }
    }
}

fn strip_slash(rel: &str) -> &str {
    rel.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_paths_are_the_real_ones() {
        let root = HostRoot::live();
        assert!(root.is_live());
        assert_eq!(root.proc("stat"), Path::new("/proc/stat"));
        assert_eq!(root.sys("/class/net"), Path::new("/sys/class/net"));
        assert_eq!(root.etc("os-release"), Path::new("/etc/os-release"));
        assert_eq!(root.path("/"), Path::new("/"));
        assert_eq!(root.path("/boot/efi"), Path::new("/boot/efi"));
        assert_eq!(root.host_view(&root.proc("meminfo")), "/proc/meminfo");
    }

    #[test]
    fn relocated_paths_stay_under_the_root() {
        let root = HostRoot::new(PathBuf::from("/srv/host"));
        assert!(!root.is_live());
        assert_eq!(root.proc("self/mountinfo"), Path::new("/srv/host/proc/self/mountinfo"));
        assert_eq!(root.sys("class/hwmon"), Path::new("/srv/host/sys/class/hwmon"));
        assert_eq!(root.etc("/machine-id"), Path::new("/srv/host/etc/machine-id"));
        assert_eq!(root.path("/"), Path::new("/srv/host"));
        assert_eq!(root.path("/mnt/a b"), Path::new("/srv/host/mnt/a b"));
        assert_eq!(root.host_view(&root.proc("stat")), "/proc/stat");
        assert_eq!(root.host_view(&root.path("/")), "/");
        let temp = root.sys("class/hwmon/hwmon0/temp1_input");
        assert_eq!(root.sys_relative(&temp), "class/hwmon/hwmon0/temp1_input");
    }

    #[test]
    fn trailing_slash_root_is_live() {
        // `--root /` must behave exactly like the default.
        assert!(HostRoot::new(PathBuf::from("/")).is_live());
    }
}
