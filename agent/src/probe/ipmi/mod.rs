//! IPMI: the BMC's sensor readings with their states (fans, temperatures, voltages, power
//! supplies, chassis intrusion) and the System Event Log entries that are new since the last
//! run, read with ipmitool through the local BMC device (`/dev/ipmi0`).
//!
//! A run is `ipmitool sdr elist` then `ipmitool sel elist`, each bounded by
//! `probes.ipmi.timeout`. `sdr elist` rather than `sdr list` because it adds the entity and the
//! asserted states of discrete sensors ("Presence detected, Failure detected"), which is how a
//! failed power supply or an opened chassis shows; rather than `-c sdr elist` because the CSV
//! form neither escapes commas (which the state lists contain) nor prints the entity; rather
//! than `-v sdr elist`, the only form that names the sensor type, because that costs two more
//! BMC commands per sensor and is a multi-line layout whose keys differ between sensor kinds.
//! So `IpmiSensor.sensor_type` stays empty; the entity (`10.1`: power supply 1, see the IPMI
//! entity ID table) and the name say what the sensor is. Formats: see [`parse`].
//!
//! Sensors change slowly and a BMC answers slowly, so a run happens on the first collect and
//! then once per `probes.ipmi.interval`; the collects in between return the last sensor
//! readings (or why there are none) without running anything. SEL entries are reported once,
//! by the collect that ran ipmitool: the probe keeps the highest record id it has seen and
//! reports only entries above it; the first run reports the last [`FIRST_RUN_EVENTS`] at most,
//! so a long history is not re-sent at every agent start. A SEL whose highest id went down was
//! cleared; all of its entries are new (at most [`MAX_EVENTS`] per run, the newest).
//!
//! A host without ipmitool, or without a BMC, is `Unavailable`: logged once, retried once per
//! interval (the schedule and that log are the shared `probe::cadence`, which SMART uses too).
//! ipmitool talks to the running kernel's device, so under a non-live `--root` it is not run at
//! all.

mod parse;

use std::time::Duration;

use vigil_proto::v1::{IpmiData, IpmiEvent, probe_result};

use super::cadence::{Cadence, RunEnd};
use super::{Probe, ProbeError};
use crate::clock::{Clock, SystemClock};
use crate::config::IpmiConfig;
use crate::root::HostRoot;

pub use super::command::{CommandRunner, DirectCommand, RunError, RunOutput};
pub use parse::{MAX_STRING, is_no_device, parse_sdr_elist, parse_sel_elist};

/// Most SEL entries reported by the first run.
pub const FIRST_RUN_EVENTS: usize = 20;
/// Most SEL entries reported by one run (the newest are kept).
pub const MAX_EVENTS: usize = 200;

const SDR: [&str; 2] = ["sdr", "elist"];
const SEL: [&str; 2] = ["sel", "elist"];

/// The IPMI probe.
pub struct Ipmi {
    config: IpmiConfig,
    runner: Box<dyn CommandRunner>,
    clock: Box<dyn Clock>,
    cadence: Cadence,
    /// What the last run ended with; its events are handed out once.
    last: Outcome,
    /// The highest SEL record id seen; `None` until the SEL was first read.
    highest_event: Option<u32>,
}

impl std::fmt::Debug for Ipmi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ipmi")
            .field("config", &self.config)
            .field("cadence", &self.cadence)
            .field("last", &self.last)
            .field("highest_event", &self.highest_event)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Data(IpmiData),
    Unavailable(String),
    Failed(String),
}

impl Outcome {
    fn end(&self) -> RunEnd<'_> {
        match self {
            Self::Data(_) => RunEnd::Data,
            Self::Unavailable(reason) => RunEnd::Unavailable(reason),
            Self::Failed(_) => RunEnd::Failed,
        }
    }
}

impl Ipmi {
    /// Runs `config.ipmitool` on the system clock.
    pub fn new(config: IpmiConfig) -> Self {
        let runner = DirectCommand::new(config.ipmitool.clone());
        Self::with_runner(config, Box::new(runner), Box::new(SystemClock))
    }

    /// Runs ipmitool through `runner` and schedules by `clock` (tests).
    pub fn with_runner(
        config: IpmiConfig,
        runner: Box<dyn CommandRunner>,
        clock: Box<dyn Clock>,
    ) -> Self {
        let cadence = Cadence::new("ipmi", "IPMI", config.interval);
        Self {
            config,
            runner,
            clock,
            cadence,
            last: Outcome::Failed("not run yet".to_owned()),
            highest_event: None,
        }
    }

    /// One full run: sensors, then the SEL. A SEL that cannot be read costs the events of
    /// this run (they are reported by the next that can), not the sensors.
    fn run(&mut self) -> Outcome {
        let sdr = match self.call(&SDR) {
            Ok(out) => out,
            Err(outcome) => return outcome,
        };
        let sensors = parse_sdr_elist(&sdr);
        if sensors.is_empty() && !String::from_utf8_lossy(&sdr).trim().is_empty() {
            let first = String::from_utf8_lossy(&sdr).lines().next().unwrap_or("").to_owned();
            return Outcome::Failed(format!(
                "ipmitool sdr elist: no sensor line in its output: {:?}",
                cut(&first)
            ));
        }
        let events = match self.call(&SEL) {
            Ok(out) => self.new_events(parse_sel_elist(&out)),
            Err(Outcome::Unavailable(reason) | Outcome::Failed(reason)) => {
                tracing::warn!(probe = "ipmi", %reason, "cannot read the System Event Log");
                Vec::new()
            }
            Err(Outcome::Data(_)) => Vec::new(),
        };
        Outcome::Data(IpmiData { sensors, events })
    }

    /// The entries of `log` (oldest first) not reported yet; remembers the highest id.
    fn new_events(&mut self, mut log: Vec<IpmiEvent>) -> Vec<IpmiEvent> {
        let highest = log.iter().map(|e| e.record_id).max().unwrap_or(0);
        let keep = match self.highest_event {
            None => FIRST_RUN_EVENTS,
            Some(seen) if highest < seen => MAX_EVENTS,
            Some(seen) => {
                log.retain(|e| e.record_id > seen);
                MAX_EVENTS
            }
        };
        self.highest_event = Some(highest);
        let skip = log.len().saturating_sub(keep);
        log.drain(..skip);
        log
    }

    /// Runs ipmitool with `args`; its stdout if it exited 0, else why not.
    fn call(&self, args: &[&str]) -> Result<Vec<u8>, Outcome> {
        let ipmitool = self.config.ipmitool.display();
        let command = args.join(" ");
        let out = match self.runner.run(args, self.config.timeout) {
            Ok(out) => out,
            Err(RunError::NotFound) => {
                return Err(Outcome::Unavailable(format!("ipmitool not found at {ipmitool}")));
            }
            Err(RunError::PermissionDenied) => {
                return Err(Outcome::Unavailable(format!("{ipmitool}: not permitted to run it")));
            }
            Err(RunError::TimedOut(after)) => {
                return Err(Outcome::Failed(format!(
                    "ipmitool {command} timed out after {after:?} and was killed"
                )));
            }
            Err(RunError::Failed(reason)) => {
                return Err(Outcome::Failed(format!("ipmitool {command}: {reason}")));
            }
        };
        if out.exit_code == 0 {
            return Ok(out.stdout);
        }
        if is_no_device(&out.stderr) {
            return Err(Outcome::Unavailable("no IPMI device".to_owned()));
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let message = stderr.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("");
        Err(Outcome::Failed(format!(
            "ipmitool {command} exited with status {}: {}",
            out.exit_code,
            cut(message)
        )))
    }
}

/// At most [`MAX_STRING`] bytes of a message taken from ipmitool.
fn cut(text: &str) -> &str {
    let mut end = text.len().min(MAX_STRING);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl Probe for Ipmi {
    fn name(&self) -> &'static str {
        "ipmi"
    }

    /// A due run calls ipmitool twice, each bounded by the configured timeout; between runs
    /// the cached reading returns at once.
    fn timeout(&self) -> Option<Duration> {
        if !self.config.enabled || !self.cadence.due(self.clock.now()) {
            return None;
        }
        Some(self.config.timeout.saturating_mul(2).min(Duration::from_secs(600)))
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        if !self.config.enabled {
            return Err(ProbeError::Unavailable("disabled in config".to_owned()));
        }
        if !root.is_live() {
            // ipmitool talks to the running host's BMC, never to a fixture tree.
            return Err(ProbeError::Unavailable("ipmitool is not run under --root".to_owned()));
        }
        let now = self.clock.now();
        if !self.cadence.due(now) {
            return match &self.last {
                // Events were reported by the run that found them.
                Outcome::Data(data) => Ok(probe_result::Data::Ipmi(IpmiData {
                    sensors: data.sensors.clone(),
                    events: Vec::new(),
                })),
                Outcome::Unavailable(reason) => Err(ProbeError::Unavailable(reason.clone())),
                Outcome::Failed(reason) => Err(ProbeError::Failed(reason.clone())),
            };
        }
        self.cadence.ran(now);
        self.last = self.run();
        self.cadence.ended(self.last.end());
        match &self.last {
            Outcome::Data(data) => Ok(probe_result::Data::Ipmi(data.clone())),
            Outcome::Unavailable(reason) => Err(ProbeError::Unavailable(reason.clone())),
            Outcome::Failed(reason) => Err(ProbeError::Failed(reason.clone())),
        }
    }
}

#[cfg(test)]
mod tests;
