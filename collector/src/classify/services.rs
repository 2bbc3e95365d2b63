//! Service rules: the contracted services of the agent's `[services]` config — systemd units
//! and process, port and HTTP checks, each flagged `critical` or not — plus failed units
//! nobody configured, and units caught in a restart loop. Resources are the unit name
//! (`nginx.service`) and `process:<name>`, `port:<name>`, `http:<name>` for the checks.
//!
//! Service rules open after 2 reports: a unit caught mid-restart or one check that timed out
//! once is not an outage.

use serde::{Deserialize, Serialize};
use vigil_proto::v1::{HttpCheck, PortCheck, ProcessCheck, ServicesData, UnitStatus};

use super::memory::counter_increase;
use super::text::text;
use super::{FaultLevel, Findings, HostMemory, RuleDef, ThresholdUnit};

pub(super) const CRITICAL_DOWN: RuleDef = RuleDef::state(
    "service.critical_down",
    FaultLevel::L1,
    "a critical unit is not active, or a critical process, port or HTTP check fails",
)
.open_after(SERVICE_OPEN_AFTER);
pub(super) const UNIT_FAILED: RuleDef = RuleDef::state(
    "service.unit_failed",
    FaultLevel::L2,
    "a configured (contracted), non-critical unit is failed",
)
.open_after(SERVICE_OPEN_AFTER);
pub(super) const CHECK_FAILED: RuleDef = RuleDef::state(
    "service.check_failed",
    FaultLevel::L2,
    "a non-critical process, port or HTTP check fails",
)
.open_after(SERVICE_OPEN_AFTER);
pub(super) const RESTART_LOOP: RuleDef = RuleDef::event(
    "service.restart_loop",
    FaultLevel::L3,
    "systemd restarted a unit at least threshold times within 30 reports (5 min at the \
     default 10 s interval)",
)
.threshold(3.0, ThresholdUnit::Count);
pub(super) const OTHER_UNIT_FAILED: RuleDef = RuleDef::state(
    "service.other_unit_failed",
    FaultLevel::L4,
    "a unit that is not in the agent's config is failed",
)
.open_after(SERVICE_OPEN_AFTER);

pub(super) const RULES: &[RuleDef] =
    &[CRITICAL_DOWN, UNIT_FAILED, CHECK_FAILED, RESTART_LOOP, OTHER_UNIT_FAILED];

const SERVICE_OPEN_AFTER: u32 = 2;

/// Reports a unit's restarts are summed over before the count starts again.
const RESTART_WINDOW_REPORTS: u32 = 30;

/// The agent's error of a port or HTTP check it did not run (under `--root`, on fixture
/// trees): not a failure of the service.
const CHECK_NOT_RUN: &str = "not run under --root";

/// `ActiveState`s of a unit that serves.
const UNIT_UP_STATES: &[&str] = &["active", "reloading"];

pub(super) fn services(data: &ServicesData, memory: &mut HostMemory, findings: &mut Findings) {
    for unit in &data.units {
        unit_state(unit, findings);
    }
    restart_loops(&data.units, memory, findings);
    let checks = (data.processes.iter().map(process_check))
        .chain(data.ports.iter().filter_map(port_check))
        .chain(data.http.iter().filter_map(http_check));
    for check in checks {
        if let Some(failure) = check.failure {
            let def = if check.critical { &CRITICAL_DOWN } else { &CHECK_FAILED };
            findings.fire(def, &check.resource, |_| failure);
        }
    }
}

fn unit_state(unit: &UnitStatus, findings: &mut Findings) {
    let up = UNIT_UP_STATES.contains(&unit.active_state.as_str());
    let failed = unit.active_state == "failed";
    let def = if unit.critical && !up {
        &CRITICAL_DOWN
    } else if failed && unit.configured {
        &UNIT_FAILED
    } else if failed {
        &OTHER_UNIT_FAILED
    } else {
        return;
    };
    let name = text(&unit.name);
    findings.fire(def, &name, |_| unit_summary(unit, &name));
}

/// `nginx.service is failed (failed), critical`; the load state when it is not `loaded`.
fn unit_summary(unit: &UnitStatus, name: &str) -> String {
    let role = match (unit.critical, unit.configured) {
        (true, _) => "critical",
        (false, true) => "configured",
        (false, false) => "not configured",
    };
    let mut summary =
        format!("{name} is {} ({}), {role}", text(&unit.active_state), text(&unit.sub_state));
    if unit.load_state != "loaded" {
        summary.push_str(&format!(", load state {}", text(&unit.load_state)));
    }
    summary
}

/// A unit's restarts (systemd's `NRestarts`) within the current window of reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(super) struct RestartWindow {
    /// `NRestarts` in the last report.
    last: u64,
    /// Restarts since the window started.
    restarts: u64,
    /// Reports since the window started.
    reports: u32,
}

impl RestartWindow {
    /// A unit seen for the first time: `NRestarts` counts its whole life, not a loop now.
    fn first_seen(restarts: u64) -> Self {
        Self { last: restarts, ..Self::default() }
    }

    /// Adds one report's `NRestarts`.
    fn add(self, now: u64) -> Self {
        Self {
            last: now,
            restarts: self.restarts.saturating_add(counter_increase(Some(self.last), now)),
            reports: self.reports.saturating_add(1),
        }
    }

    /// The window after it was reported, or after it ran its length: counting starts again.
    fn restart(self) -> Self {
        Self::first_seen(self.last)
    }
}

/// An event when a unit restarted `threshold` times within [`RESTART_WINDOW_REPORTS`]
/// reports; then its count starts again. Units not in this report are forgotten.
fn restart_loops(units: &[UnitStatus], memory: &mut HostMemory, findings: &mut Findings) {
    let mut previous = std::mem::take(&mut memory.unit_restarts);
    let threshold = findings.rule(&RESTART_LOOP).map(|rule| rule.threshold);
    for unit in units {
        let name = text(&unit.name);
        let now = u64::from(unit.restarts);
        let mut window = match previous.remove(name.as_ref()) {
            Some(window) => window.add(now),
            None => RestartWindow::first_seen(now),
        };
        if threshold.is_some_and(|threshold| window.restarts as f64 >= threshold) {
            findings.fire(&RESTART_LOOP, &name, |_| {
                format!(
                    "{name} restarted {} times within {} reports (NRestarts {now})",
                    window.restarts, window.reports
                )
            });
            window = window.restart();
        } else if window.reports >= RESTART_WINDOW_REPORTS {
            window = window.restart();
        }
        memory.unit_restarts.insert(name.into_owned(), window);
    }
}

/// One process, port or HTTP check as the rules see it.
struct CheckOutcome {
    resource: String,
    critical: bool,
    /// Why it fails; `None` when it passes.
    failure: Option<String>,
}

fn process_check(check: &ProcessCheck) -> CheckOutcome {
    let resource = format!("process:{}", text(&check.name));
    let failure = (check.count < check.min_count).then(|| {
        format!(
            "{resource}: {} processes matching `{}`, at least {} expected",
            check.count,
            text(&check.pattern),
            check.min_count
        )
    });
    CheckOutcome { resource, critical: check.critical, failure }
}

/// `None` for a check the agent did not run.
fn port_check(check: &PortCheck) -> Option<CheckOutcome> {
    if check.error == CHECK_NOT_RUN {
        return None;
    }
    let resource = format!("port:{}", text(&check.name));
    let failure = (!check.open).then(|| {
        format!("{resource}: {}:{} not open: {}", text(&check.host), check.port, text(&check.error))
    });
    Some(CheckOutcome { resource, critical: check.critical, failure })
}

/// `None` for a check the agent did not run.
fn http_check(check: &HttpCheck) -> Option<CheckOutcome> {
    if check.error == CHECK_NOT_RUN {
        return None;
    }
    let resource = format!("http:{}", text(&check.name));
    let failure = (!check.ok).then(|| {
        let url = text(&check.url);
        match check.status_code {
            Some(code) => {
                format!("{resource}: {url} answered {code}, expected {}", check.expected_status)
            }
            None => format!("{resource}: {url} failed: {}", text(&check.error)),
        }
    });
    Some(CheckOutcome { resource, critical: check.critical, failure })
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::probe_result::Data;

    use super::*;
    use crate::classify::testing::{fired, rules_with, run, run_once};
    use crate::classify::{FindingKind, RuleOverride, classify, testing};

    fn unit(name: &str, active_state: &str, critical: bool, configured: bool) -> UnitStatus {
        UnitStatus {
            name: name.into(),
            active_state: active_state.into(),
            sub_state: if active_state == "active" { "running".into() } else { "dead".into() },
            load_state: "loaded".into(),
            critical,
            configured,
            ..UnitStatus::default()
        }
    }

    fn services_data(data: ServicesData) -> Data {
        Data::Services(ServicesData { systemd_available: true, ..data })
    }

    fn units(units: Vec<UnitStatus>) -> Data {
        services_data(ServicesData { units, ..ServicesData::default() })
    }

    #[test]
    fn unit_states() {
        let findings = run_once([units(vec![
            unit("nginx.service", "failed", true, true),
            unit("postgresql.service", "inactive", true, true),
            unit("sshd.service", "active", true, true),
            unit("haproxy.service", "reloading", true, true),
            unit("backup.service", "failed", false, true),
            unit("report.service", "inactive", false, true),
            unit("fwupd.service", "failed", false, false),
        ])]);
        assert_eq!(
            fired(&findings),
            [
                ("service.critical_down", "nginx.service", FaultLevel::L1),
                ("service.critical_down", "postgresql.service", FaultLevel::L1),
                ("service.unit_failed", "backup.service", FaultLevel::L2),
                ("service.other_unit_failed", "fwupd.service", FaultLevel::L4),
            ]
        );
        assert_eq!(findings[0].summary, "nginx.service is failed (dead), critical");
        assert_eq!(findings[3].summary, "fwupd.service is failed (dead), not configured");
        let missing = UnitStatus {
            load_state: "not-found".into(),
            ..unit("app.service", "inactive", true, true)
        };
        let findings = run_once([units(vec![missing])]);
        assert_eq!(
            findings[0].summary,
            "app.service is inactive (dead), critical, load state not-found"
        );
    }

    fn restarts(n: u32) -> Data {
        units(vec![UnitStatus { restarts: n, ..unit("app.service", "active", false, true) }])
    }

    #[test]
    fn restart_loop_within_a_window() {
        let mut memory = HostMemory::default();
        // First seen with restarts from its whole life: not a loop.
        assert_eq!(run(&mut memory, [restarts(40)]), []);
        assert_eq!(run(&mut memory, [restarts(41)]), []);
        assert_eq!(run(&mut memory, [restarts(42)]), []);
        let findings = run(&mut memory, [restarts(43)]);
        assert_eq!(fired(&findings), [("service.restart_loop", "app.service", FaultLevel::L3)]);
        assert_eq!(findings[0].kind, FindingKind::Event);
        assert_eq!(
            findings[0].summary,
            "app.service restarted 3 times within 3 reports (NRestarts 43)"
        );
        // The count starts again after an event.
        assert_eq!(run(&mut memory, [restarts(44)]), []);
        // A reset (the unit was restarted by hand): its new count is new restarts.
        assert_eq!(run(&mut memory, [restarts(2)]).len(), 1);
    }

    #[test]
    fn slow_restarts_outside_the_window_are_not_a_loop() {
        let mut memory = HostMemory::default();
        run(&mut memory, [restarts(0)]);
        let mut events = 0;
        for report in 1..=(3 * RESTART_WINDOW_REPORTS) {
            // One restart every 15 reports: two per window, never three.
            let count = report / 15;
            events += run(&mut memory, [restarts(count)]).len();
        }
        assert_eq!(events, 0);
        // Unchanged report after report: nothing.
        assert_eq!(run(&mut memory, [restarts(6)]), []);
    }

    #[test]
    fn restart_threshold_override() {
        let rules = rules_with(
            "service.restart_loop",
            RuleOverride { threshold: Some(1.0), ..Default::default() },
        );
        let mut memory = HostMemory::default();
        classify(&testing::report([restarts(0)]), &mut memory, &rules);
        let findings = classify(&testing::report([restarts(1)]), &mut memory, &rules);
        assert_eq!(fired(&findings), [("service.restart_loop", "app.service", FaultLevel::L3)]);
    }

    #[test]
    fn checks() {
        let process = |name: &str, count, critical| ProcessCheck {
            name: name.into(),
            pattern: name.into(),
            min_count: 1,
            count,
            critical,
        };
        let port = |name: &str, open, error: &str, critical| PortCheck {
            name: name.into(),
            host: "127.0.0.1".into(),
            port: 5432,
            open,
            error: error.into(),
            critical,
            ..PortCheck::default()
        };
        let http = |name: &str, ok: bool, error: &str| HttpCheck {
            name: name.into(),
            url: "http://127.0.0.1/health".into(),
            status_code: (!ok).then_some(503),
            expected_status: 200,
            ok,
            error: error.into(),
            critical: false,
            ..HttpCheck::default()
        };
        let data = services_data(ServicesData {
            processes: vec![
                process("nginx", 0, true),
                process("cron", 0, false),
                process("sshd", 1, true),
            ],
            ports: vec![
                port("db", false, "connection refused", true),
                port("cache", true, "", false),
                port("other", false, CHECK_NOT_RUN, true),
            ],
            http: vec![http("api", false, "status 503, expected 200"), http("web", true, "")],
            ..ServicesData::default()
        });
        let findings = run_once([data]);
        assert_eq!(
            fired(&findings),
            [
                ("service.critical_down", "process:nginx", FaultLevel::L1),
                ("service.check_failed", "process:cron", FaultLevel::L2),
                ("service.critical_down", "port:db", FaultLevel::L1),
                ("service.check_failed", "http:api", FaultLevel::L2),
            ]
        );
        let summaries: Vec<&str> = findings.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(
            summaries,
            [
                "process:nginx: 0 processes matching `nginx`, at least 1 expected",
                "process:cron: 0 processes matching `cron`, at least 1 expected",
                "port:db: 127.0.0.1:5432 not open: connection refused",
                "http:api: http://127.0.0.1/health answered 503, expected 200",
            ]
        );
    }
}
