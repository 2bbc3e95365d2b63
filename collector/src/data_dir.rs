//! The collector's data directory and the files it keeps there (the store, its WAL, the CA, the
//! replica id, the first admin token): private to the service user whatever the umask it was
//! started with. The directory is created 0700, the process umask is set to 077 so every file
//! the collector or SQLite creates is 0600, and what an earlier run left wider is narrowed at
//! start with a log line saying so. Secret files the collector is given (the API's TLS key, a
//! webhook's secret) are refused when others can read them, as the CA key is.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode bits that let anyone but the owner in.
const OTHERS: u32 = 0o077;

/// Makes `dir` ready to hold the collector's state: creates it 0700 (and any missing parents
/// with the default mode), narrows it and the files in it to owner-only when an earlier run
/// or a manual `mkdir` left them wider, and sets the process umask to 077.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(OTHERS));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    narrow(dir, 0o700)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            narrow(&entry.path(), 0o700)?;
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                if inner.file_type()?.is_file() {
                    narrow(&inner.path(), 0o600)?;
                }
            }
        } else if kind.is_file() {
            narrow(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Clears the group and other bits of `path` when set, saying so; `private` is what the path is
/// set to then.
fn narrow(path: &Path, private: u32) -> std::io::Result<()> {
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    if mode & OTHERS != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(private))?;
        tracing::warn!(
            path = %path.display(),
            was = %format!("{mode:o}"),
            now = %format!("{private:o}"),
            "narrowed the permissions of a data-directory entry others could read"
        );
    }
    Ok(())
}

/// Refuses a key or secret file that anyone but its owner can read or write: the error (to be
/// prefixed with the path by the caller) gives its mode and the `chmod` that fixes it.
pub fn check_private_file(path: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & OTHERS != 0 {
        return Err(format!(
            "readable by others (mode {mode:o}), but it holds a secret; run `chmod 600 {}`",
            path.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_new_directory_is_private_and_an_old_wide_one_is_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = tmp.path().join("fresh");
        prepare(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let old = tmp.path().join("old");
        std::fs::create_dir_all(old.join("tls")).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        for file in ["vigil.db", "vigil.db-wal", "tls/ca.crt"] {
            std::fs::write(old.join(file), b"x").unwrap();
            std::fs::set_permissions(old.join(file), std::fs::Permissions::from_mode(0o644))
                .unwrap();
        }
        prepare(&old).unwrap();
        assert_eq!(mode(&old), 0o700);
        assert_eq!(mode(&old.join("tls")), 0o700);
        for file in ["vigil.db", "vigil.db-wal", "tls/ca.crt"] {
            assert_eq!(mode(&old.join(file)), 0o600, "{file}");
        }
        // And what the process creates afterwards is private too.
        std::fs::write(old.join("new"), b"x").unwrap();
        assert_eq!(mode(&old.join("new")), 0o600);
    }

    #[test]
    fn secret_files_others_can_read_are_refused_by_name() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("webhook.secret");
        std::fs::write(&path, b"0123456789abcdef").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_private_file(&path).unwrap();
        for wide in [0o644, 0o640, 0o604, 0o620] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wide)).unwrap();
            let err = check_private_file(&path).unwrap_err();
            assert!(err.starts_with("readable by others"), "{err}");
            assert!(err.contains(&format!("mode {wide:o}")), "{err}");
            assert!(err.contains("chmod 600"), "{err}");
        }
    }
}
