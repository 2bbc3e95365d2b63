//! The agent's configuration: one typed struct that documents itself. The doc comments are the
//! reference (`docs/configuration.md`), defaults are named in [`Default`], [`Validate`] checks
//! ranges, and every key can be overridden by a command-line flag. The example file
//! `packaging/config/agent.example.toml` is generated from the defaults and drift-tested.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vigil_config::{FieldError, Validate, duration};

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct AgentConfig {
    /// The collector's gRPC address, `https://HOST:PORT` (TLS only; the agent trusts the CA it
    /// got at enrolment). Several replicas, separated by commas, are tried in order: the agent
    /// moves to the next when one is unreachable or refuses with `UNAVAILABLE`.
    pub collector: String,
    /// Time between two reports.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Where the agent keeps its instance UUID, sequence number, spool and, under `tls/`, its
    /// key and certificates.
    pub state_dir: PathBuf,
    /// Root under which every /proc, /sys and /etc read happens (for containers and tests).
    pub root: PathBuf,
    /// Longest one probe may run before it is reported as failed.
    #[serde(with = "duration")]
    pub probe_timeout: Duration,
    pub spool: SpoolConfig,
    pub backoff: BackoffConfig,
    pub probes: ProbesConfig,
    /// The contracted services: systemd units, processes, TCP ports and HTTP endpoints. A
    /// top-level table rather than under `probes`, because it says what the host is for, not
    /// how to read its hardware.
    pub services: ServicesConfig,
}

impl AgentConfig {
    /// The collector addresses, in the order they are tried.
    pub fn collectors(&self) -> Vec<String> {
        self.collector
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// What the probes are built from: `probes` with `services` copied in.
    pub fn probes_config(&self) -> ProbesConfig {
        ProbesConfig { services: self.services.clone(), ..self.probes.clone() }
    }
}

/// Settings of the probes that run external tools or keep their own schedule.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ProbesConfig {
    pub smart: SmartConfig,
    pub ipmi: IpmiConfig,
    /// A copy of [`AgentConfig::services`] for the services probe (the probes are built from
    /// this struct alone). Not a key of `[probes]`: filled by [`AgentConfig::probes_config`].
    #[serde(skip)]
    pub services: ServicesConfig,
}

/// `[services]`: what the services probe checks. Every list is empty by default; the probe
/// then still reports every failed systemd unit.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct ServicesConfig {
    /// Longest one TCP port or HTTP check may take, connecting and (HTTP) getting the status
    /// line together.
    #[serde(with = "duration")]
    pub check_timeout: Duration,
    /// systemd units to report, `[[services.units]]`.
    pub units: Vec<UnitCheckConfig>,
    /// Process checks, `[[services.processes]]`.
    pub processes: Vec<ProcessCheckConfig>,
    /// TCP port checks, `[[services.ports]]`.
    pub ports: Vec<PortCheckConfig>,
    /// HTTP checks, `[[services.http]]`.
    pub http: Vec<HttpCheckConfig>,
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            check_timeout: Duration::from_secs(5),
            units: Vec::new(),
            processes: Vec::new(),
            ports: Vec::new(),
            http: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn one() -> u32 {
    1
}

fn http_ok() -> u16 {
    200
}

/// One systemd unit, by its full name (`nginx.service`).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct UnitCheckConfig {
    pub name: String,
    /// Whether the unit being down makes the host critical.
    #[serde(default = "yes")]
    pub critical: bool,
}

/// Processes that must be running: at least `min_count` of them match `pattern`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct ProcessCheckConfig {
    /// The check's name in reports.
    pub name: String,
    /// Without a space or `/`: the process name, compared exactly with `/proc/<pid>/comm`
    /// (which the kernel cuts to 15 bytes). With a space or `/`: a substring of the command
    /// line (`/proc/<pid>/cmdline`, its arguments joined by spaces). Empty: `name` as a
    /// process name.
    #[serde(default)]
    pub pattern: String,
    #[serde(default = "one")]
    pub min_count: u32,
    #[serde(default = "yes")]
    pub critical: bool,
}

impl ProcessCheckConfig {
    /// The pattern in force: `pattern`, or `name` when it is empty.
    pub fn effective_pattern(&self) -> &str {
        if self.pattern.is_empty() { &self.name } else { &self.pattern }
    }
}

/// A TCP port that must accept connections.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct PortCheckConfig {
    pub name: String,
    /// A host name or IP address; a name is resolved at every check.
    pub host: String,
    pub port: u16,
    #[serde(default = "yes")]
    pub critical: bool,
}

/// An HTTP endpoint that must answer with `expected_status`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct HttpCheckConfig {
    pub name: String,
    /// `http://HOST[:PORT][/PATH]` or `https://…`.
    pub url: String,
    #[serde(default = "http_ok")]
    pub expected_status: u16,
    #[serde(default = "yes")]
    pub critical: bool,
    /// For `https://`: the CA certificate(s) (PEM) to trust instead of the system's bundle,
    /// e.g. a customer's internal CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SmartConfig {
    /// Run the SMART probe at all.
    pub enabled: bool,
    /// The smartctl binary (an absolute path; it is run directly, never through a shell).
    pub smartctl: PathBuf,
    /// Time between two SMART readings; between them, reports carry the last one.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Longest one smartctl call may run before it is killed.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for SmartConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            smartctl: PathBuf::from("/usr/sbin/smartctl"),
            interval: Duration::from_secs(30 * 60),
            timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct IpmiConfig {
    /// Run the IPMI probe at all.
    pub enabled: bool,
    /// The ipmitool binary (an absolute path; it is run directly, never through a shell).
    pub ipmitool: PathBuf,
    /// Time between two IPMI readings; between them, reports carry the last one.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Longest one ipmitool call may run before it is killed.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for IpmiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ipmitool: PathBuf::from("/usr/bin/ipmitool"),
            interval: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(20),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            collector: "https://127.0.0.1:7700".to_owned(),
            interval: Duration::from_secs(10),
            state_dir: PathBuf::from("/var/lib/vigil-agent"),
            root: PathBuf::from("/"),
            probe_timeout: Duration::from_secs(5),
            spool: SpoolConfig::default(),
            backoff: BackoffConfig::default(),
            probes: ProbesConfig::default(),
            services: ServicesConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct SpoolConfig {
    /// Most unacknowledged reports kept while the collector is unreachable. When the spool is
    /// full (by count or by bytes), the oldest reports are dropped, logged, and counted to the
    /// collector.
    pub max_reports: usize,
    /// Most bytes the spool may take on disk (records are checksummed and compressed). See
    /// docs/benchmarks.md for how many hours the default holds.
    pub max_bytes: u64,
    /// Most bytes held in memory while the state directory cannot be written (disk full, I/O
    /// error, read-only); the agent goes back to disk as soon as it can.
    pub max_memory_bytes: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self { max_reports: 100_000, max_bytes: 64 << 20, max_memory_bytes: 16 << 20 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(default)]
pub struct BackoffConfig {
    /// First delay before reconnecting after a failure.
    #[serde(with = "duration")]
    pub initial: Duration,
    /// Longest delay between reconnection attempts.
    #[serde(with = "duration")]
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::from_secs(60) }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), FieldError> {
        let smart = &self.probes.smart;
        if !smart.smartctl.is_absolute() {
            return Err(FieldError::new(
                "probes.smart.smartctl",
                format!("{} is not an absolute path", smart.smartctl.display()),
            ));
        }
        if smart.interval < Duration::from_secs(60) {
            return Err(FieldError::new("probes.smart.interval", "must be at least 1m"));
        }
        if smart.timeout.is_zero() || smart.timeout > Duration::from_secs(300) {
            return Err(FieldError::new("probes.smart.timeout", "must be between 1ms and 5m"));
        }
        let ipmi = &self.probes.ipmi;
        if !ipmi.ipmitool.is_absolute() {
            return Err(FieldError::new(
                "probes.ipmi.ipmitool",
                format!("{} is not an absolute path", ipmi.ipmitool.display()),
            ));
        }
        if ipmi.interval < Duration::from_secs(60) {
            return Err(FieldError::new("probes.ipmi.interval", "must be at least 1m"));
        }
        if ipmi.timeout.is_zero() || ipmi.timeout > Duration::from_secs(300) {
            return Err(FieldError::new("probes.ipmi.timeout", "must be between 1ms and 5m"));
        }
        let collectors = self.collectors();
        if collectors.is_empty() {
            return Err(FieldError::new("collector", "no collector address given"));
        }
        for collector in &collectors {
            check_collector_url(collector)?;
        }
        if self.interval < Duration::from_secs(1) || self.interval > Duration::from_secs(3600) {
            return Err(FieldError::new("interval", "must be between 1s and 1h"));
        }
        if self.probe_timeout < Duration::from_millis(100) || self.probe_timeout > self.interval {
            return Err(FieldError::new(
                "probe_timeout",
                "must be at least 100ms and not longer than interval",
            ));
        }
        if self.state_dir.as_os_str().is_empty() {
            return Err(FieldError::new("state_dir", "must not be empty"));
        }
        if self.spool.max_bytes < 1 << 20 {
            return Err(FieldError::new("spool.max_bytes", "must be at least 1048576 (1 MiB)"));
        }
        if self.spool.max_memory_bytes < 1 << 20 {
            return Err(FieldError::new(
                "spool.max_memory_bytes",
                "must be at least 1048576 (1 MiB)",
            ));
        }
        if self.spool.max_reports == 0 {
            return Err(FieldError::new("spool.max_reports", "must be at least 1"));
        }
        if self.backoff.initial < Duration::from_millis(10) {
            return Err(FieldError::new("backoff.initial", "must be at least 10ms"));
        }
        if self.backoff.max < self.backoff.initial {
            return Err(FieldError::new("backoff.max", "must not be shorter than backoff.initial"));
        }
        self.services.validate()
    }
}

impl Validate for ServicesConfig {
    fn validate(&self) -> Result<(), FieldError> {
        if self.check_timeout < Duration::from_millis(10)
            || self.check_timeout > Duration::from_secs(60)
        {
            return Err(FieldError::new("services.check_timeout", "must be between 10ms and 1m"));
        }
        let empty = |key: String| FieldError::new(key, "must not be empty");
        for (i, unit) in self.units.iter().enumerate() {
            let key = format!("services.units[{i}].name");
            if unit.name.is_empty() {
                return Err(empty(key));
            }
            if !unit.name.contains('.') || unit.name.contains('/') {
                return Err(FieldError::new(
                    key,
                    format!("{:?} is not a full unit name like \"nginx.service\"", unit.name),
                ));
            }
        }
        for (i, process) in self.processes.iter().enumerate() {
            if process.name.is_empty() {
                return Err(empty(format!("services.processes[{i}].name")));
            }
            let pattern = process.effective_pattern();
            if !is_cmdline_pattern(pattern) && pattern.len() > COMM_LEN {
                let key = if process.pattern.is_empty() { "name" } else { "pattern" };
                return Err(FieldError::new(
                    format!("services.processes[{i}].{key}"),
                    format!(
                        "{pattern:?} is longer than the {COMM_LEN} bytes the kernel keeps as a \
                         process name; match the command line instead (a pattern with a '/' \
                         or a space)"
                    ),
                ));
            }
            if process.min_count == 0 {
                return Err(FieldError::new(
                    format!("services.processes[{i}].min_count"),
                    "must be at least 1",
                ));
            }
        }
        for (i, port) in self.ports.iter().enumerate() {
            if port.name.is_empty() {
                return Err(empty(format!("services.ports[{i}].name")));
            }
            if port.host.is_empty() {
                return Err(empty(format!("services.ports[{i}].host")));
            }
            if port.port == 0 {
                return Err(FieldError::new(
                    format!("services.ports[{i}].port"),
                    "must be between 1 and 65535",
                ));
            }
        }
        for (i, http) in self.http.iter().enumerate() {
            if http.name.is_empty() {
                return Err(empty(format!("services.http[{i}].name")));
            }
            if let Err(reason) = crate::probe::services::HttpUrl::parse(&http.url) {
                return Err(FieldError::new(format!("services.http[{i}].url"), reason));
            }
            if !(100..=599).contains(&http.expected_status) {
                return Err(FieldError::new(
                    format!("services.http[{i}].expected_status"),
                    "must be between 100 and 599",
                ));
            }
        }
        Ok(())
    }
}

/// Bytes of a process name the kernel keeps in `/proc/<pid>/comm` (`TASK_COMM_LEN` - 1).
pub const COMM_LEN: usize = 15;

/// Whether a process pattern is matched against the command line rather than the name.
pub fn is_cmdline_pattern(pattern: &str) -> bool {
    pattern.contains(' ') || pattern.contains('/')
}

/// The example config shipped in `packaging/config/`, generated from the defaults.
pub fn example_toml() -> String {
    let body = toml::to_string_pretty(&AgentConfig::default()).expect("defaults serialize");
    format!(
        "# vigil-agent configuration (generated from the defaults; see docs/configuration.md).\n\
         # Every key is optional and can be overridden by a flag of the same name.\n\
         # Durations are written like \"10s\", \"5m\", \"1h\".\n\n{body}"
    )
}

/// A collector address must be `https://HOST:PORT`.
fn check_collector_url(collector: &str) -> Result<(), FieldError> {
    let uri: Result<tonic::transport::Uri, _> = collector.parse();
    match uri {
        Ok(uri) if uri.scheme_str() == Some("https") && uri.host().is_some() => {}
        Ok(uri) if uri.scheme_str() == Some("http") => {
            return Err(FieldError::new(
                "collector",
                format!("{:?}: the collector accepts TLS only; use https://HOST:PORT", collector),
            ));
        }
        _ => {
            return Err(FieldError::new(
                "collector",
                format!("{:?} is not a collector address like https://127.0.0.1:7700", collector),
            ));
        }
    }
    Ok(())
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
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/config/agent.example.toml");
        vigil_config::golden::assert_example_file::<AgentConfig>(&path, &example_toml());
    }

    fn load(text: &str) -> String {
        load_str::<AgentConfig>(Path::new("/etc/vigil/agent.toml"), text, Strictness::WarnUnknown)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bad_collector_address_names_line_and_key() {
        assert_eq!(
            load("interval = \"10s\"\ncollector = \"127.0.0.1:7700\"\n"),
            "/etc/vigil/agent.toml:2: key `collector`: \"127.0.0.1:7700\" is not a collector \
             address like https://127.0.0.1:7700"
        );
    }

    #[test]
    fn plaintext_collector_address_is_refused() {
        assert_eq!(
            load("collector = \"http://127.0.0.1:7700\"\n"),
            "/etc/vigil/agent.toml:1: key `collector`: \"http://127.0.0.1:7700\": the collector \
             accepts TLS only; use https://HOST:PORT"
        );
    }

    #[test]
    fn several_collectors_are_tried_in_order_and_each_is_checked() {
        let config: AgentConfig =
            toml::from_str("collector = \"https://a.example:7700, https://b.example:7700,\"\n")
                .unwrap();
        assert_eq!(config.collectors(), ["https://a.example:7700", "https://b.example:7700"]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            load("collector = \"https://a.example:7700,http://b.example:7700\"\n"),
            "/etc/vigil/agent.toml:1: key `collector`: \"http://b.example:7700\": the collector \
             accepts TLS only; use https://HOST:PORT"
        );
        assert_eq!(
            load("collector = \" , \"\n"),
            "/etc/vigil/agent.toml:1: key `collector`: no collector address given"
        );
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let err = load("[spool]\nmax_reports = \"many\"\n");
        assert!(
            err.starts_with("/etc/vigil/agent.toml:2: key `spool.max_reports`: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn relative_ipmitool_path_and_short_ipmi_interval_are_refused() {
        assert_eq!(
            load("[probes.ipmi]\nipmitool = \"ipmitool\"\n"),
            "/etc/vigil/agent.toml:2: key `probes.ipmi.ipmitool`: ipmitool is not an absolute path"
        );
        assert_eq!(
            load("[probes.ipmi]\ninterval = \"30s\"\n"),
            "/etc/vigil/agent.toml:2: key `probes.ipmi.interval`: must be at least 1m"
        );
    }

    #[test]
    fn out_of_range_interval_is_refused() {
        assert_eq!(
            load("interval = \"0s\"\n"),
            "/etc/vigil/agent.toml:1: key `interval`: must be between 1s and 1h"
        );
    }

    #[test]
    fn services_tables_parse_with_defaults() {
        let text = "[services]\ncheck_timeout = \"2s\"\n\
                    [[services.units]]\nname = \"nginx.service\"\n\
                    [[services.units]]\nname = \"backup.timer\"\ncritical = false\n\
                    [[services.processes]]\nname = \"nginx\"\nmin_count = 2\n\
                    [[services.ports]]\nname = \"ssh\"\nhost = \"127.0.0.1\"\nport = 22\n\
                    [[services.http]]\nname = \"web\"\nurl = \"http://127.0.0.1:8080/health\"\n";
        let config = load_str::<AgentConfig>(Path::new("a.toml"), text, Strictness::RejectUnknown)
            .unwrap()
            .value;
        let services = ServicesConfig {
            check_timeout: Duration::from_secs(2),
            units: vec![
                UnitCheckConfig { name: "nginx.service".into(), critical: true },
                UnitCheckConfig { name: "backup.timer".into(), critical: false },
            ],
            processes: vec![ProcessCheckConfig {
                name: "nginx".into(),
                pattern: String::new(),
                min_count: 2,
                critical: true,
            }],
            ports: vec![PortCheckConfig {
                name: "ssh".into(),
                host: "127.0.0.1".into(),
                port: 22,
                critical: true,
            }],
            http: vec![HttpCheckConfig {
                name: "web".into(),
                url: "http://127.0.0.1:8080/health".into(),
                expected_status: 200,
                critical: true,
                ca_file: None,
            }],
        };
        assert_eq!(config.services, services);
        assert_eq!(config.probes.services, ServicesConfig::default(), "filled in by probes_config");
        assert_eq!(config.probes_config().services, services);
    }

    #[test]
    fn bad_services_name_the_key() {
        assert_eq!(
            load(
                "[[services.ports]]\nname = \"a\"\nhost = \"h\"\nport = 1\n\
                  [[services.ports]]\nname = \"b\"\nhost = \"h\"\nport = 0\n"
            ),
            "/etc/vigil/agent.toml: key `services.ports[1].port`: must be between 1 and 65535"
        );
        assert_eq!(
            load("[[services.http]]\nname = \"a\"\nurl = \"ftp://example.com/\"\n"),
            "/etc/vigil/agent.toml: key `services.http[0].url`: \"ftp://example.com/\" is not \
             a URL like http://127.0.0.1:8080/health"
        );
        assert_eq!(
            load("[[services.units]]\nname = \"nginx\"\n"),
            "/etc/vigil/agent.toml: key `services.units[0].name`: \"nginx\" is not a full unit \
             name like \"nginx.service\""
        );
        assert_eq!(
            load("[[services.processes]]\nname = \"systemd-resolved\"\n"),
            "/etc/vigil/agent.toml: key `services.processes[0].name`: \"systemd-resolved\" is \
             longer than the 15 bytes the kernel keeps as a process name; match the command line \
             instead (a pattern with a '/' or a space)"
        );
        assert_eq!(
            load("[services]\ncheck_timeout = \"2m\"\n"),
            "/etc/vigil/agent.toml:2: key `services.check_timeout`: must be between 10ms and 1m"
        );
        let err = load("[[services.ports]]\nname = \"a\"\nhost = \"h\"\nport = 70000\n");
        assert!(err.contains("key `services.ports[0].port`"), "{err}");
    }
}
