//! Loading of Vigil's TOML configuration files, shared by the agent and the collector.
//!
//! It owns one promise to operators: a bad config file is reported with the file, the line and
//! the key at fault, and never half-applied. Syntax errors, wrong types and invalid values
//! (from [`Validate`]) are errors; an unknown key is only a warning, because a fleet must
//! survive an upgrade that renamed a key, unless the caller asks for strictness.
//!
//! [`sd_notify`] sits here too: the service-manager protocol both daemons speak, in std only,
//! in the one crate both already depend on.

pub mod sd_notify;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A value a config struct rejects in [`Validate::validate`]: which key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the key, e.g. `collector.interval`.
    pub key: String,
    pub message: String,
}

impl FieldError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: key.into(), message: message.into() }
    }
}

/// Checks a config after it parsed: ranges, combinations, anything types cannot say.
pub trait Validate {
    fn validate(&self) -> Result<(), FieldError>;
}

/// Why a config file could not be loaded. The display form is what operators read:
/// `FILE:LINE: KEY: MESSAGE`.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", location(path, *line, None))]
    Syntax { path: PathBuf, line: Option<usize>, message: String },
    #[error("{}: {message}", location(path, *line, Some(key)))]
    Field { path: PathBuf, line: Option<usize>, key: String, message: String },
    #[error("{}: unknown key (rejected by --strict)", location(path, *line, Some(key)))]
    UnknownKey { path: PathBuf, line: Option<usize>, key: String },
}

impl ConfigError {
    /// The line the error points at, when known (1-based).
    pub fn line(&self) -> Option<usize> {
        match self {
            Self::Read { .. } => None,
            Self::Syntax { line, .. }
            | Self::Field { line, .. }
            | Self::UnknownKey { line, .. } => *line,
        }
    }
}

/// A key the config struct does not know. Loading goes on without it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: String,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: unknown key, ignored", location(&self.path, self.line, Some(&self.key)))
    }
}

fn location(path: &Path, line: Option<usize>, key: Option<&str>) -> String {
    let mut out = path.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
    }
    if let Some(key) = key {
        out.push_str(&format!(": key `{key}`"));
    }
    out
}

/// A parsed, validated config and the unknown keys met on the way.
#[derive(Debug)]
pub struct Loaded<T> {
    pub value: T,
    pub unknown_keys: Vec<UnknownKey>,
}

/// Whether unknown keys are warnings (the default) or errors (`check-config --strict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    #[default]
    WarnUnknown,
    RejectUnknown,
}

/// Reads, parses and validates `path`.
pub fn load_file<T>(path: &Path, strictness: Strictness) -> Result<Loaded<T>, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let text = std::fs::read_to_string(path)
        .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    load_str(path, &text, strictness)
}

/// Parses and validates `text` as if read from `path` (used in messages only).
pub fn load_str<T>(
    path: &Path,
    text: &str,
    strictness: Strictness,
) -> Result<Loaded<T>, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let lines = LineIndex::new(text);
    let syntax = |err: toml::de::Error| ConfigError::Syntax {
        path: path.to_owned(),
        line: err.span().map(|s| lines.line_of(s.start)),
        message: err.message().to_owned(),
    };
    let spans = toml::de::DeTable::parse(text).map_err(syntax)?;

    let deserializer = toml::de::Deserializer::parse(text).map_err(syntax)?;
    let mut ignored = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let result: Result<T, toml::de::Error> = {
        let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
        serde_ignored::deserialize(tracked, |p| ignored.push(p.to_string()))
    };
    let value = result.map_err(|err| {
        let key = track.path().to_string();
        let line =
            err.span().map(|s| lines.line_of(s.start)).or_else(|| key_line(&spans, &key, &lines));
        if key.is_empty() || key == "." {
            ConfigError::Syntax { path: path.to_owned(), line, message: err.message().to_owned() }
        } else {
            ConfigError::Field {
                path: path.to_owned(),
                line,
                key,
                message: err.message().to_owned(),
            }
        }
    })?;

    let unknown_keys: Vec<UnknownKey> = ignored
        .into_iter()
        .map(|key| UnknownKey { path: path.to_owned(), line: key_line(&spans, &key, &lines), key })
        .collect();
    if strictness == Strictness::RejectUnknown
        && let Some(first) = unknown_keys.first()
    {
        return Err(ConfigError::UnknownKey {
            path: first.path.clone(),
            line: first.line,
            key: first.key.clone(),
        });
    }

    value.validate().map_err(|e| ConfigError::Field {
        path: path.to_owned(),
        line: key_line(&spans, &e.key, &lines),
        key: e.key,
        message: e.message,
    })?;
    Ok(Loaded { value, unknown_keys })
}

/// Finds the line of a dotted key path in the parsed document, if it is there.
fn key_line(
    root: &toml::Spanned<toml::de::DeTable<'_>>,
    key: &str,
    lines: &LineIndex,
) -> Option<usize> {
    let mut table = root.get_ref();
    let mut parts = key.split('.').filter(|p| !p.is_empty()).peekable();
    while let Some(part) = parts.next() {
        let (k, v) = table.get_key_value(part)?;
        if parts.peek().is_none() {
            return Some(lines.line_of(k.span().start));
        }
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => return Some(lines.line_of(k.span().start)),
        }
    }
    None
}

/// Byte offset → 1-based line number.
struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self { starts }
    }

    fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Serde helpers for durations written the human way: `"10s"`, `"5m"`, `"14days"`.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration {text:?}: {e} (write it like \"10s\", \"5m\" or \"14days\")"
            ))
        })
    }

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*value))
    }

    /// For `Option<Duration>` fields (with `#[serde(default)]`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }

        pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, s),
                None => s.serialize_none(),
            }
        }
    }

    /// The shortest exact form in one unit: `"400days"`, `"1h"`, `"90s"`, `"250ms"`.
    pub fn format(value: Duration) -> String {
        let secs = value.as_secs();
        if value.subsec_nanos() != 0 || secs == 0 {
            return format!("{}ms", value.as_millis());
        }
        match secs {
            86_400 => "1day".to_owned(),
            s if s % 86_400 == 0 => format!("{}days", s / 86_400),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Sample {
        name: String,
        #[serde(with = "duration")]
        interval: Duration,
        limits: Limits,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct Limits {
        max: u32,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self { name: "x".into(), interval: Duration::from_secs(10), limits: Limits::default() }
        }
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), FieldError> {
            if self.interval < Duration::from_secs(1) {
                return Err(FieldError::new("interval", "must be at least 1s"));
            }
            Ok(())
        }
    }

    fn load(text: &str, strictness: Strictness) -> Result<Loaded<Sample>, ConfigError> {
        load_str(Path::new("/etc/vigil/x.toml"), text, strictness)
    }

    #[test]
    fn durations_format_in_one_exact_unit() {
        assert_eq!(duration::format(Duration::from_secs(400 * 86_400)), "400days");
        assert_eq!(duration::format(Duration::from_secs(7200)), "2h");
        assert_eq!(duration::format(Duration::from_secs(90)), "90s");
        assert_eq!(duration::format(Duration::from_millis(250)), "250ms");
        for text in ["400days", "2h", "90s", "250ms"] {
            let d = humantime::parse_duration(text).unwrap();
            assert_eq!(duration::format(d), text);
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let loaded = load("", Strictness::RejectUnknown).unwrap();
        assert_eq!(loaded.value.interval, Duration::from_secs(10));
        assert!(loaded.unknown_keys.is_empty());
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = load("name = \"a\"\ninterval = \n", Strictness::WarnUnknown).unwrap_err();
        assert_eq!(err.line(), Some(2), "{err}");
        assert!(err.to_string().starts_with("/etc/vigil/x.toml:2: "), "{err}");
    }

    #[test]
    fn wrong_type_names_file_line_and_key() {
        let err = load("name = \"a\"\n\n[limits]\nmax = \"lots\"\n", Strictness::WarnUnknown)
            .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("/etc/vigil/x.toml:4: key `limits.max`: "), "{text}");
        assert!(text.contains("invalid type"), "{text}");
    }

    #[test]
    fn invalid_value_names_file_line_and_key() {
        let err = load("name = \"a\"\ninterval = \"1ms\"\n", Strictness::WarnUnknown).unwrap_err();
        assert_eq!(err.to_string(), "/etc/vigil/x.toml:2: key `interval`: must be at least 1s");
    }

    #[test]
    fn bad_duration_says_how_to_write_one() {
        let err = load("interval = \"often\"\n", Strictness::WarnUnknown).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("/etc/vigil/x.toml:1: key `interval`: invalid duration"),
            "{text}"
        );
    }

    #[test]
    fn unknown_key_is_a_warning_with_line() {
        let loaded =
            load("name = \"a\"\n[limits]\nmax = 3\nmaximum = 4\n", Strictness::WarnUnknown)
                .unwrap();
        assert_eq!(loaded.value.limits.max, 3);
        assert_eq!(loaded.unknown_keys.len(), 1);
        assert_eq!(
            loaded.unknown_keys[0].to_string(),
            "/etc/vigil/x.toml:4: key `limits.maximum`: unknown key, ignored"
        );
    }

    #[test]
    fn unknown_key_is_an_error_when_strict() {
        let err = load("nmae = \"a\"\n", Strictness::RejectUnknown).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/vigil/x.toml:1: key `nmae`: unknown key (rejected by --strict)"
        );
    }

    #[test]
    fn missing_file_names_the_file() {
        let err =
            load_file::<Sample>(Path::new("/nonexistent/vigil.toml"), Strictness::WarnUnknown)
                .unwrap_err();
        assert!(
            err.to_string().starts_with("/nonexistent/vigil.toml: cannot read config file"),
            "{err}"
        );
    }
}

/// How a binary turns its config file and flags into a config, the same way for every binary.
///
/// The file is read when it exists or was named explicitly (a missing default path means
/// "defaults"); unknown keys are printed as warnings; any error is printed on stderr and becomes
/// exit code 2, the code operators' scripts check for "bad config".
pub mod cli {
    use std::path::Path;
    use std::process::ExitCode;

    use serde::de::DeserializeOwned;

    use crate::{Strictness, Validate, load_file};

    /// Exit code for an invalid config file or flag.
    pub const EXIT_BAD_CONFIG: u8 = 2;

    /// The config from `path`, or the defaults when `path` is the unnamed default and absent.
    pub fn load_or_default<T>(
        path: &Path,
        explicit: bool,
        strictness: Strictness,
    ) -> Result<T, ExitCode>
    where
        T: DeserializeOwned + Validate + Default,
    {
        if !explicit && !path.exists() {
            return Ok(T::default());
        }
        match load_file::<T>(path, strictness) {
            Ok(loaded) => {
                for unknown in &loaded.unknown_keys {
                    eprintln!("warning: {unknown}");
                }
                Ok(loaded.value)
            }
            Err(err) => {
                eprintln!("error: {err}");
                Err(ExitCode::from(EXIT_BAD_CONFIG))
            }
        }
    }

    /// Validates a config again after flags were applied over it.
    pub fn validate_flags<T: Validate>(config: T) -> Result<T, ExitCode> {
        match config.validate() {
            Ok(()) => Ok(config),
            Err(err) => {
                eprintln!("error: flag for `{}`: {}", err.key, err.message);
                Err(ExitCode::from(EXIT_BAD_CONFIG))
            }
        }
    }
}

/// Checks every binary's config tests share: the shipped example file is generated from the
/// defaults (rerun with `VIGIL_UPDATE_GOLDEN=1` to regenerate it), loads strictly back to the
/// defaults, and every key it has is documented in `docs/configuration.md`.
pub mod golden {
    use std::fmt::Debug;
    use std::path::Path;

    use serde::de::DeserializeOwned;

    use crate::{Strictness, Validate, load_str};

    /// Panics unless the example file at `path` equals `expected` and parses to `T::default()`.
    pub fn assert_example_file<T>(path: &Path, expected: &str)
    where
        T: DeserializeOwned + Validate + Default + PartialEq + Debug,
    {
        if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some() {
            std::fs::write(path, expected).unwrap();
        }
        let actual = std::fs::read_to_string(path).unwrap_or_default();
        assert_eq!(
            actual,
            expected,
            "{} drifted; rerun with VIGIL_UPDATE_GOLDEN=1",
            path.display()
        );
        let loaded: T = load_str(path, &actual, Strictness::RejectUnknown).unwrap().value;
        assert_eq!(loaded, T::default());
    }

    /// Panics unless the golden file at `path` holds `actual`, line for line (the message names
    /// the first differing line). With `VIGIL_UPDATE_GOLDEN=1` it writes `actual` there
    /// instead, creating the directory; review the diff.
    pub fn assert_golden_file(path: &Path, actual: &str) {
        if std::env::var_os("VIGIL_UPDATE_GOLDEN").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, actual).unwrap();
            return;
        }
        let expected = std::fs::read_to_string(path).unwrap_or_else(|err| {
            panic!("{}: {err}; run with VIGIL_UPDATE_GOLDEN=1 to create it", path.display())
        });
        for (n, (want, got)) in expected.lines().zip(actual.lines()).enumerate() {
            assert_eq!(
                want,
                got,
                "{}:{} differs (VIGIL_UPDATE_GOLDEN=1 rewrites it; then review the diff)",
                path.display(),
                n + 1
            );
        }
        assert_eq!(
            expected.lines().count(),
            actual.lines().count(),
            "{} has a different length (VIGIL_UPDATE_GOLDEN=1 rewrites it)",
            path.display()
        );
    }

    /// Panics unless every leaf key of `example` (a TOML document) has a `` | `key` | `` row in
    /// `doc`, with nested tables joined by dots (`probes.smart.interval`).
    pub fn assert_keys_documented(example: &str, doc: &str) {
        fn leaves(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
            for (key, value) in table {
                let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                match value.as_table() {
                    Some(inner) => leaves(&key, inner, out),
                    None => out.push(key),
                }
            }
        }
        let example: toml::Table = toml::from_str(example).unwrap();
        let mut keys = Vec::new();
        leaves("", &example, &mut keys);
        for key in keys {
            assert!(
                doc.contains(&format!("| `{key}` |")),
                "{key} missing from docs/configuration.md"
            );
        }
    }
}
