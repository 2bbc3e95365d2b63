//! The collector's configuration: one typed struct that documents itself. Doc comments on the
//! fields are the reference (`docs/configuration.md`), defaults are named functions, and
//! [`Validate`] checks what types cannot. The example file `packaging/config/collector.example.toml`
//! is generated from [`CollectorConfig::default`] and a test fails when it drifts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_config::{FieldError, Validate, duration};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct CollectorConfig {
    /// Directory of the embedded store (SQLite database `vigil.db`).
    pub data_dir: PathBuf,
    pub grpc: GrpcConfig,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub retention: RetentionConfig,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./vigil-data"),
            grpc: GrpcConfig::default(),
            http: HttpConfig::default(),
            ingest: IngestConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct GrpcConfig {
    /// Address agents stream reports to. Until enrolment and mutual TLS are configured the
    /// collector speaks plaintext and therefore only listens on a loopback address.
    pub listen: SocketAddr,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 7700)) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct HttpConfig {
    /// Address of the operator API, `/metrics`, `/healthz` and `/readyz`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 7701)) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct IngestConfig {
    /// Largest accepted report, in bytes (encoded protobuf). Larger ones are rejected with
    /// gRPC `InvalidArgument`.
    pub max_report_bytes: usize,
    /// Most reports committed together in one transaction (group commit).
    pub max_batch: usize,
    /// A host is "silent" when its last report is older than max(3 × its interval, this).
    #[serde(with = "duration")]
    pub min_silence: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self { max_report_bytes: 1024 * 1024, max_batch: 512, min_silence: Duration::from_secs(60) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct RetentionConfig {
    /// How long a receipt per report (host, instance, seq, times) is kept.
    #[serde(with = "duration")]
    pub receipts: Duration,
    /// How long the 5-minute min/avg/max roll-ups of readings are kept.
    #[serde(with = "duration")]
    pub rollups: Duration,
    /// How often retention is enforced.
    #[serde(with = "duration")]
    pub sweep_every: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            receipts: Duration::from_secs(14 * 86_400),
            rollups: Duration::from_secs(400 * 86_400),
            sweep_every: Duration::from_secs(3600),
        }
    }
}

impl Validate for CollectorConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if !self.grpc.listen.ip().is_loopback() {
            return Err(FieldError::new(
                "grpc.listen",
                format!(
                    "{} is not a loopback address; without mutual TLS the collector registers \
                     agents at first contact and so only listens on 127.0.0.1 or ::1",
                    self.grpc.listen
                ),
            ));
        }
        if self.ingest.max_report_bytes < 1024 || self.ingest.max_report_bytes > 64 * 1024 * 1024 {
            return Err(FieldError::new(
                "ingest.max_report_bytes",
                "must be between 1024 and 67108864 (64 MiB)",
            ));
        }
        if self.ingest.max_batch == 0 || self.ingest.max_batch > 10_000 {
            return Err(FieldError::new("ingest.max_batch", "must be between 1 and 10000"));
        }
        if self.retention.receipts < Duration::from_secs(3600) {
            return Err(FieldError::new("retention.receipts", "must be at least 1h"));
        }
        if self.retention.rollups < Duration::from_secs(86_400) {
            return Err(FieldError::new("retention.rollups", "must be at least 1day"));
        }
        if self.retention.sweep_every < Duration::from_secs(1) {
            return Err(FieldError::new("retention.sweep_every", "must be at least 1s"));
        }
        Ok(())
    }
}

/// The example config shipped in `packaging/config/`, generated from the defaults.
pub fn example_toml() -> String {
    let body = toml::to_string_pretty(&CollectorConfig::default()).expect("defaults serialize");
    format!(
        "# vigil-collector configuration (generated from the defaults; see docs/configuration.md).\n\
         # Every key is optional. Durations are written like \"10s\", \"5m\", \"14days\".\n\n{body}"
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use vigil_config::{Strictness, load_str};

    use super::*;

    /// Every key of the example file has a row in docs/configuration.md.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../docs/configuration.md");
        vigil_config::golden::assert_keys_documented(&example_toml(), doc);
    }

    #[test]
    fn example_file_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../packaging/config/collector.example.toml");
        vigil_config::golden::assert_example_file::<CollectorConfig>(&path, &example_toml());
    }

    #[test]
    fn non_loopback_grpc_is_refused_with_line() {
        let err = load_str::<CollectorConfig>(
            Path::new("c.toml"),
            "[grpc]\nlisten = \"0.0.0.0:7700\"\n",
            Strictness::WarnUnknown,
        )
        .unwrap_err();
        assert!(
            err.to_string().starts_with("c.toml:2: key `grpc.listen`: 0.0.0.0:7700 is not"),
            "{err}"
        );
    }

    #[test]
    fn bad_address_names_key() {
        let err = load_str::<CollectorConfig>(
            Path::new("c.toml"),
            "\n[http]\nlisten = \"localhost\"\n",
            Strictness::WarnUnknown,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("c.toml:3: key `http.listen`: "), "{err}");
    }
}
