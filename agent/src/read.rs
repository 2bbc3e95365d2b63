//! Small readers for kernel files, shared by the probes and host facts.
//!
//! Files under procfs and sysfs report a stat size of 0 or 4096 whatever they hold, so they are
//! always read until end of file from the opened handle, never sized from metadata (procfs
//! `internal/util/readfile.go`). Every error names the file it came from, so a probe's message
//! says which kernel file failed; [`crate::root::HostRoot::host_view`] turns that into the
//! path as the host sees it.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Reading or parsing one kernel file failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file was read but its content is not what the kernel documents.
    #[error("{}: cannot parse {value:?}: {reason}", path.display())]
    Parse { path: PathBuf, value: String, reason: String },
}

impl ReadError {
    /// The file this error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Io { path, .. } | Self::Parse { path, .. } => path,
        }
    }

    /// True when the file does not exist (the kernel or driver does not provide it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The cause without the path, for messages that print the path themselves.
    pub fn reason(&self) -> String {
        match self {
            Self::Io { source, .. } => source.to_string(),
            Self::Parse { value, reason, .. } => format!("cannot parse {value:?}: {reason}"),
        }
    }

    fn parse(path: &Path, value: &str, reason: impl fmt::Display) -> Self {
        Self::Parse {
            path: path.to_path_buf(),
            value: value.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The whole file as text, read until end of file whatever its stat size claims.
pub fn read_string(path: &Path) -> Result<String, ReadError> {
    let io_err = |source| ReadError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err)?;
    Ok(text)
}

/// A single-value file (most sysfs attributes) with surrounding whitespace removed.
pub fn read_trimmed(path: &Path) -> Result<String, ReadError> {
    read_string(path).map(|text| text.trim().to_owned())
}

/// Like [`read_string`], but a missing file is `Ok(None)` rather than an error.
pub fn read_optional(path: &Path) -> Result<Option<String>, ReadError> {
    match read_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.is_not_found() => Ok(None),
        Err(err) => Err(err),
    }
}

/// A numeric (or otherwise `FromStr`) attribute such as `/sys/class/net/eth0/speed`.
pub fn parse_attr<T>(path: &Path) -> Result<T, ReadError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = read_trimmed(path)?;
    text.parse::<T>().map_err(|err| ReadError::parse(path, &text, err))
}

/// [`parse_attr`] for optional attributes: any failure (absent file, `EINVAL` from a driver
/// that has no value right now, garbage) is `None`, logged at debug level.
pub fn attr<T>(path: &Path) -> Option<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match parse_attr(path) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::debug!(%err, "attribute not readable");
            None
        }
    }
}

/// [`read_trimmed`] for optional text attributes: failures are `None`.
pub fn attr_string(path: &Path) -> Option<String> {
    match read_trimmed(path) {
        Ok(value) => Some(value),
        Err(err) => {
            tracing::debug!(%err, "attribute not readable");
            None
        }
    }
}

/// Parses `Key:   value [kB]` lines (`/proc/meminfo`, `/proc/<pid>/status`) into a map of
/// the numeric value per key. The unit is dropped: callers know which keys are in kB.
/// Lines that do not fit the pattern are skipped.
pub fn parse_key_values(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let value = rest.split_whitespace().next()?.parse().ok()?;
            Some((key.trim().to_owned(), value))
        })
        .collect()
}

/// Parses one `avgNN` of a pressure stall line (`/proc/pressure/*`), e.g. `kind = "some"`,
/// `field = "avg60"` in `some avg10=0.00 avg60=2.00 avg300=3.85 total=15`.
pub fn parse_pressure(text: &str, kind: &str, field: &str) -> Option<f64> {
    let line = text.lines().find(|line| line.split_whitespace().next() == Some(kind))?;
    line.split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == field)
        .and_then(|(_, value)| value.parse().ok())
}

/// The directories `<prefix>N` in `dir` with their numbers, in numeric order (`hwmon2` before
/// `hwmon10`). Symlinks are followed, as every entry of a sysfs class directory is one; anything
/// that is not a directory, or whose suffix is not a number, is skipped. A missing `dir` is an
/// empty list.
pub(crate) fn numbered_dirs(dir: &Path, prefix: &str) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut numbered: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let number = entry.file_name().to_str()?.strip_prefix(prefix)?.parse().ok()?;
            let path = entry.path();
            path.is_dir().then_some((number, path))
        })
        .collect();
    numbered.sort();
    numbered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_whole_file_and_trims() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("speed");
        std::fs::write(&path, "  1000\n").unwrap();
        assert_eq!(read_string(&path).unwrap(), "  1000\n");
        assert_eq!(read_trimmed(&path).unwrap(), "1000");
        assert_eq!(parse_attr::<u32>(&path).unwrap(), 1000);
        assert_eq!(attr::<u32>(&path), Some(1000));
        assert_eq!(attr::<u8>(&path), None);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let err = read_string(&missing).unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(err.path(), missing);
        assert!(err.to_string().starts_with(&missing.display().to_string()));
        assert_eq!(read_optional(&missing).unwrap(), None);

        let bad = dir.path().join("carrier");
        std::fs::write(&bad, "x\n").unwrap();
        let err = parse_attr::<u8>(&bad).unwrap_err();
        assert!(!err.is_not_found());
        assert!(err.to_string().contains("carrier"), "{err}");
        assert!(err.reason().starts_with("cannot parse \"x\""), "{}", err.reason());
    }

    #[test]
    fn key_values_keep_numbers_and_skip_junk() {
        let map = parse_key_values(
            "MemTotal:       15666184 kB\nHugePages_Total:       0\nnot a line\nEmpty:\n",
        );
        assert_eq!(map.get("MemTotal"), Some(&15_666_184));
        assert_eq!(map.get("HugePages_Total"), Some(&0));
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn pressure_lines() {
        let text = "some avg10=0.10 avg60=2.00 avg300=3.85 total=15\n\
                    full avg10=0.20 avg60=3.00 avg300=4.95 total=25\n";
        assert_eq!(parse_pressure(text, "some", "avg60"), Some(2.0));
        assert_eq!(parse_pressure(text, "full", "avg60"), Some(3.0));
        assert_eq!(parse_pressure("some avg10=0.10\n", "full", "avg60"), None);
    }
}
