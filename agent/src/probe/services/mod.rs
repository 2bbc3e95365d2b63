//! Services: the contracted services of the host, as `[services]` in the config names them.
//! systemd units (each configured one, and every failed one) with their states and restart
//! counts; process checks (a name or command-line pattern, a minimum count); TCP port checks;
//! HTTP checks (the status code, within a timeout). Each configured service carries its
//! `critical` flag into the report, so the collector can tell "the host is down" from "a
//! helper is down".
//!
//! The probe always has data: a part that cannot be read says so inside [`ServicesData`]
//! (`systemd_available = false` with a message on a host without systemd, such as a
//! container; an `error` per port or HTTP check) rather than failing the whole probe, so the
//! process checks still count on a host without systemd.
//!
//! Under a non-live `--root` the processes are read from the tree, while the port and HTTP
//! checks and systemd (which would all read the machine the agent runs on, not the tree) are
//! not run, so fixture reports are the same on every machine.

mod checks;
pub mod systemd;

use std::time::Duration;

use vigil_proto::v1::{ServicesData, probe_result};

use super::{Probe, ProbeError};
use crate::config::ServicesConfig;
use crate::root::HostRoot;

pub use checks::{
    HttpUrl, ProcessInfo, http_check, join_cmdline, matches, parse_status_line, port_check,
    process_check, scan_processes,
};

/// Error of a port or HTTP check under a non-live root.
pub const NOT_RUN_UNDER_ROOT: &str = "not run under --root";

/// Most port and HTTP checks run at the same time.
const PARALLEL_CHECKS: usize = 16;

/// systemd's message under a non-live root.
pub const SYSTEMD_NOT_READ_UNDER_ROOT: &str = "systemd is not read under --root";

/// The services probe.
#[derive(Debug, Clone)]
pub struct Services {
    config: ServicesConfig,
    /// The D-Bus address systemd is read at; `None`: the system bus, looked up at each reading.
    bus_address: Option<String>,
}

impl Services {
    /// Reads systemd on the system bus.
    pub fn new(config: ServicesConfig) -> Self {
        Self { config, bus_address: None }
    }

    /// Reads systemd on the bus at `address` (a D-Bus address like `unix:path=/run/bus`; tests).
    pub fn with_bus_address(config: ServicesConfig, address: String) -> Self {
        Self { config, bus_address: Some(address) }
    }

    /// Every port and HTTP check, [`PARALLEL_CHECKS`] at a time, each on its own thread.
    fn network_checks(&self, data: &mut ServicesData) {
        let timeout = self.config.check_timeout;
        enum Check<'a> {
            Port(&'a crate::config::PortCheckConfig),
            Http(&'a crate::config::HttpCheckConfig),
        }
        let all: Vec<Check<'_>> = (self.config.ports.iter().map(Check::Port))
            .chain(self.config.http.iter().map(Check::Http))
            .collect();
        for batch in all.chunks(PARALLEL_CHECKS) {
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|check| {
                        scope.spawn(move || match check {
                            Check::Port(port) => (Some(port_check(port, timeout)), None),
                            Check::Http(http) => (None, Some(http_check(http, timeout))),
                        })
                    })
                    .collect();
                for (handle, check) in handles.into_iter().zip(batch) {
                    match (handle.join(), check) {
                        (Ok((Some(port), _)), _) => data.ports.push(port),
                        (Ok((_, Some(http))), _) => data.http.push(http),
                        (_, Check::Port(port)) => {
                            data.ports.push(checks::port_not_run(port, "check panicked"));
                        }
                        (_, Check::Http(http)) => {
                            data.http.push(checks::http_not_run(http, "check panicked"));
                        }
                    }
                }
            });
        }
    }
}

impl Probe for Services {
    fn name(&self) -> &'static str {
        "services"
    }

    /// systemd is read within `check_timeout`, then the network checks run in parallel, each
    /// bounded by `check_timeout`; a little more for the process scan.
    fn timeout(&self) -> Option<Duration> {
        Some(self.config.check_timeout.saturating_mul(2) + Duration::from_secs(2))
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let mut data = ServicesData::default();
        if root.is_live() {
            let address = self.bus_address.clone().unwrap_or_else(systemd::system_bus_address);
            match systemd::read_units(&address, &self.config.units, self.config.check_timeout) {
                Ok(units) => {
                    data.units = units;
                    data.systemd_available = true;
                }
                Err(message) => data.systemd_message = message,
            }
        } else {
            data.systemd_message = SYSTEMD_NOT_READ_UNDER_ROOT.to_owned();
        }
        if !self.config.processes.is_empty() {
            let processes = scan_processes(root);
            data.processes =
                self.config.processes.iter().map(|p| process_check(p, &processes)).collect();
        }
        if root.is_live() {
            self.network_checks(&mut data);
        } else {
            data.ports = (self.config.ports.iter())
                .map(|p| checks::port_not_run(p, NOT_RUN_UNDER_ROOT))
                .collect();
            data.http = (self.config.http.iter())
                .map(|h| checks::http_not_run(h, NOT_RUN_UNDER_ROOT))
                .collect();
        }
        Ok(probe_result::Data::Services(data))
    }
}

#[cfg(test)]
mod tests;
