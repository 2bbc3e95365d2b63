//! SMART: each disk's own health self-assessment and the counters that predict its failure
//! (reallocated, pending and uncorrectable sectors, CRC errors, NVMe critical warnings and
//! wear, SCSI grown defects), read with smartctl from smartmontools 7.0+ (`--json`).
//!
//! A run is `smartctl --json --scan-open` for the devices and their `-d` types (`sat`,
//! `nvme`, `megaraid,4`, ...), then `smartctl --json -a -n standby -d TYPE NAME` per device,
//! each call bounded by `probes.smart.timeout`. `-n standby` makes smartctl leave a spun-down
//! disk alone; such a disk is reported `in_standby` without readings. SMART data changes
//! slowly and reading it costs disk commands, so a run happens on the first collect and then
//! once per `probes.smart.interval`; the collects in between return the last outcome
//! (readings, or why there are none) without running anything. A host without smartctl, or
//! where it is not allowed to open the disks, is `Unavailable`: logged once, and retried once
//! per interval.
//!
//! smartctl talks to the kernel's devices directly, so this probe reads the host the agent
//! runs on whatever [`HostRoot`] says (in a container: the devices passed into it).
//!
//! Parsing is pure and separate ([`parse_device`], [`parse_scan`], fuzzed by
//! `fuzz/fuzz_targets/parse_smartctl.rs`); running smartctl sits behind [`SmartctlRunner`]
//! (the shared `probe::command`, which IPMI uses too) and "now" behind [`Clock`], so tests
//! serve fixture files and move time by hand. The schedule and the once-only "unavailable"
//! log are the shared `probe::cadence`, which IPMI uses too.

mod parse;

use std::time::Duration;

use vigil_proto::v1::{SmartData, SmartDevice, probe_result};

use super::cadence::{Cadence, RunEnd};
use super::{Probe, ProbeError};
use crate::clock::{Clock, SystemClock};
use crate::config::SmartConfig;
use crate::root::HostRoot;

pub use super::command::{
    CommandRunner as SmartctlRunner, DirectCommand as SmartctlCommand, RunError, RunOutput,
};
pub use parse::{ScanEntry, parse_device, parse_scan};

/// The SMART probe.
pub struct Smart {
    config: SmartConfig,
    runner: Box<dyn SmartctlRunner>,
    clock: Box<dyn Clock>,
    cadence: Cadence,
    /// What the last run ended with, returned until the next.
    last: Outcome,
}

impl std::fmt::Debug for Smart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Smart")
            .field("config", &self.config)
            .field("cadence", &self.cadence)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

/// The outcome of a run, kept until the next one.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Data(SmartData),
    Unavailable(String),
    Failed(String),
}

impl Outcome {
    fn to_result(&self) -> Result<probe_result::Data, ProbeError> {
        match self {
            Self::Data(data) => Ok(probe_result::Data::Smart(data.clone())),
            Self::Unavailable(reason) => Err(ProbeError::Unavailable(reason.clone())),
            Self::Failed(reason) => Err(ProbeError::Failed(reason.clone())),
        }
    }

    fn end(&self) -> RunEnd<'_> {
        match self {
            Self::Data(_) => RunEnd::Data,
            Self::Unavailable(reason) => RunEnd::Unavailable(reason),
            Self::Failed(_) => RunEnd::Failed,
        }
    }
}

impl Smart {
    /// Runs `config.smartctl` on the system clock.
    pub fn new(config: SmartConfig) -> Self {
        let runner = SmartctlCommand::new(config.smartctl.clone());
        Self::with_runner(config, Box::new(runner), Box::new(SystemClock))
    }

    /// Runs smartctl through `runner` and schedules by `clock` (tests).
    pub fn with_runner(
        config: SmartConfig,
        runner: Box<dyn SmartctlRunner>,
        clock: Box<dyn Clock>,
    ) -> Self {
        let cadence = Cadence::new("smart", "SMART", config.interval);
        Self { config, runner, clock, cadence, last: Outcome::Failed("not run yet".to_owned()) }
    }

    /// One full run: scan, then every device.
    fn run(&self) -> Outcome {
        let scan_args = ["--json", "--scan-open"];
        let scan = match self.runner.run(&scan_args, self.config.timeout) {
            Ok(out) => out,
            Err(err) => return self.run_error(&scan_args, err),
        };
        let scan_exit = u32::try_from(scan.exit_code).unwrap_or(u32::MAX);
        let report = match parse::scan_report(&scan.stdout) {
            Ok(report) => report,
            // smartctl before 7.0 does not know --json and says so with exit bit 0.
            Err(_) if scan_exit & 1 != 0 => {
                return Outcome::Unavailable(format!(
                    "{} does not accept --json (smartmontools 7.0 or later needed)",
                    self.config.smartctl.display()
                ));
            }
            Err(err) => return Outcome::Failed(format!("smartctl --scan-open: {err}")),
        };
        if report.not_permitted {
            return not_permitted("the device scan was refused");
        }
        if report.devices.is_empty() {
            return Outcome::Unavailable("smartctl found no devices".to_owned());
        }

        let mut devices = Vec::with_capacity(report.devices.len());
        let mut refused = 0;
        for entry in &report.devices {
            let device = if let Some(open_error) = &entry.open_error {
                refused += usize::from(parse::is_not_permitted(open_error));
                unread(entry, format!("device open failed during scan: {open_error}"))
            } else {
                match self.device(entry) {
                    Ok((device, not_permitted)) => {
                        refused += usize::from(not_permitted);
                        device
                    }
                    Err(outcome) => return outcome,
                }
            };
            devices.push(device);
        }
        if refused == devices.len() {
            return not_permitted(&devices[0].error);
        }
        Outcome::Data(SmartData { devices })
    }

    /// Reads one device. `Err` ends the whole run (smartctl vanished or may not be run);
    /// anything else wrong with the device is that device's `error`. The flag says the
    /// device could not be opened for lack of permission.
    fn device(&self, entry: &ScanEntry) -> Result<(SmartDevice, bool), Outcome> {
        let args = [
            "--json",
            "-a",
            "-n",
            "standby",
            "-d",
            entry.device_type.as_str(),
            entry.name.as_str(),
        ];
        let out = match self.runner.run(&args, self.config.timeout) {
            Ok(out) => out,
            Err(err @ (RunError::NotFound | RunError::PermissionDenied)) => {
                return Err(self.run_error(&args, err));
            }
            Err(RunError::TimedOut(after)) => {
                let error = format!("smartctl timed out after {after:?} and was killed");
                return Ok((unread(entry, error), false));
            }
            Err(RunError::Failed(reason)) => return Ok((unread(entry, reason), false)),
        };
        let exit_code = u32::try_from(out.exit_code).ok();
        match parse::device_report(&out.stdout, exit_code) {
            Ok(report) => {
                let mut device = report.device;
                // What we asked for is the key; smartctl may not echo it (open failed).
                device.name.clone_from(&entry.name);
                device.device_type.clone_from(&entry.device_type);
                if device.protocol.is_empty() {
                    device.protocol.clone_from(&entry.protocol);
                }
                Ok((device, report.not_permitted))
            }
            Err(err) => {
                let mut device = unread(entry, format!("unreadable smartctl output: {err}"));
                device.exit_status = exit_code.unwrap_or(0);
                Ok((device, false))
            }
        }
    }

    fn run_error(&self, args: &[&str], err: RunError) -> Outcome {
        let smartctl = self.config.smartctl.display();
        match err {
            RunError::NotFound => Outcome::Unavailable(format!("{smartctl} not found")),
            RunError::PermissionDenied => {
                Outcome::Unavailable(format!("{smartctl}: not permitted to run it"))
            }
            RunError::TimedOut(after) => Outcome::Failed(format!(
                "smartctl {} timed out after {after:?} and was killed",
                args.join(" ")
            )),
            RunError::Failed(reason) => Outcome::Failed(format!("smartctl: {reason}")),
        }
    }
}

fn not_permitted(detail: &str) -> Outcome {
    Outcome::Unavailable(format!(
        "smartctl is not permitted to open the disks (it needs root): {detail}"
    ))
}

/// A device without readings.
fn unread(entry: &ScanEntry, error: String) -> SmartDevice {
    SmartDevice {
        name: entry.name.clone(),
        device_type: entry.device_type.clone(),
        protocol: entry.protocol.clone(),
        error,
        ..SmartDevice::default()
    }
}

impl Probe for Smart {
    fn name(&self) -> &'static str {
        "smart"
    }

    /// A due run calls smartctl once to scan and once per disk, each bounded by the configured
    /// timeout; between runs the cached reading returns at once.
    fn timeout(&self) -> Option<Duration> {
        if !self.config.enabled || !self.cadence.due(self.clock.now()) {
            return None;
        }
        let disks = match &self.last {
            Outcome::Data(data) => data.devices.len(),
            _ => 8,
        };
        let calls = u32::try_from(disks + 1).unwrap_or(u32::MAX);
        Some(self.config.timeout.saturating_mul(calls).min(Duration::from_secs(600)))
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        if !self.config.enabled {
            return Err(ProbeError::Unavailable("disabled in config".to_owned()));
        }
        if !root.is_live() {
            // smartctl reads the running host's disks, never a fixture tree.
            return Err(ProbeError::Unavailable("smartctl is not run under --root".to_owned()));
        }
        let now = self.clock.now();
        if self.cadence.due(now) {
            self.cadence.ran(now);
            self.last = self.run();
            self.cadence.ended(self.last.end());
        }
        self.last.to_result()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(30 * 60);

    fn fixture(path: &str) -> Vec<u8> {
        let full = format!("{}/tests/fixtures/smartctl/{path}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&full).unwrap_or_else(|err| panic!("{full}: {err}"))
    }

    /// The shared fake runner, answering with this module's fixtures.
    #[derive(Clone)]
    struct FakeRunner(crate::probe::command::testing::FakeRunner);

    impl Default for FakeRunner {
        fn default() -> Self {
            Self(crate::probe::command::testing::FakeRunner::new(
                "smartctl",
                Duration::from_secs(20),
            ))
        }
    }

    impl FakeRunner {
        fn answer(&self, command: &str, fixture_path: &str, exit_code: i32) -> &Self {
            let out =
                RunOutput { stdout: fixture(fixture_path), exit_code, ..RunOutput::default() };
            self.0.output(command, out);
            self
        }
        fn fail(&self, command: &str, err: RunError) -> &Self {
            self.0.fail(command, err);
            self
        }
        fn calls(&self) -> Vec<String> {
            self.0.calls()
        }
    }

    impl SmartctlRunner for FakeRunner {
        fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError> {
            self.0.run(args, timeout)
        }
    }

    use crate::clock::testing::FakeClock;

    fn config() -> SmartConfig {
        SmartConfig {
            enabled: true,
            smartctl: "/usr/sbin/smartctl".into(),
            interval: INTERVAL,
            timeout: Duration::from_secs(20),
        }
    }

    fn probe(runner: &FakeRunner, clock: &FakeClock) -> Smart {
        Smart::with_runner(config(), Box::new(runner.clone()), Box::new(clock.clone()))
    }

    fn collect(smart: &mut Smart) -> Result<SmartData, ProbeError> {
        match smart.collect(&HostRoot::live())? {
            probe_result::Data::Smart(data) => Ok(data),
            other => panic!("not SMART data: {other:?}"),
        }
    }

    const SCAN: &str = "--json --scan-open";

    fn megaraid_host() -> FakeRunner {
        let runner = FakeRunner::default();
        runner
            .answer(SCAN, "synthetic/scan-open-megaraid.json", 0)
            .answer("--json -a -n standby -d sat /dev/sda", "ata/WDC_WD20EFRX-68EUZN0_17.json", 0)
            .answer("--json -a -n standby -d sat /dev/sdc", "synthetic/standby-sat-sdc.json", 2)
            .answer(
                "--json -a -n standby -d megaraid,4 /dev/bus/0",
                "scsi/SEAGATE_ST373453LC_26.json",
                0,
            )
            .answer(
                "--json -a -n standby -d sat+megaraid,5 /dev/bus/0",
                "synthetic/failing-ata-ST3500418AS_12.json",
                8,
            )
            .answer(
                "--json -a -n standby -d nvme /dev/nvme0",
                "nvme/nvme-null-SAMSUNG_MZWLL3T2HAJQ-00005-nvme0.json",
                8,
            );
        runner
    }

    #[test]
    fn scans_then_reads_each_device_with_its_type() {
        let runner = megaraid_host();
        let clock = FakeClock::new();
        let data = collect(&mut probe(&runner, &clock)).unwrap();
        assert_eq!(
            runner.calls(),
            [
                SCAN,
                "--json -a -n standby -d sat /dev/sda",
                "--json -a -n standby -d sat /dev/sdc",
                "--json -a -n standby -d megaraid,4 /dev/bus/0",
                "--json -a -n standby -d sat+megaraid,5 /dev/bus/0",
                "--json -a -n standby -d nvme /dev/nvme0",
            ],
            "/dev/sdd failed to open during the scan and is not asked again"
        );
        let keys: Vec<(&str, &str, &str)> = data
            .devices
            .iter()
            .map(|d| (d.name.as_str(), d.device_type.as_str(), d.protocol.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("/dev/sda", "sat", "ATA"),
                ("/dev/sdc", "sat", "ATA"),
                ("/dev/sdd", "scsi", "SCSI"),
                ("/dev/bus/0", "megaraid,4", "SCSI"),
                ("/dev/bus/0", "sat+megaraid,5", "ATA"),
                ("/dev/nvme0", "nvme", "NVMe"),
            ]
        );
        let [sda, sdc, sdd, megaraid4, megaraid5, nvme0] = &data.devices[..] else {
            panic!("{data:?}");
        };
        assert_eq!((sda.health_passed, sda.model.as_str()), (Some(true), "WDC WD20EFRX-68EUZN0"));
        assert!(sdc.in_standby);
        assert_eq!((sdc.error.as_str(), sdc.health_passed), ("", None));
        assert_eq!(sdd.error, "device open failed during scan: INQUIRY failed");
        assert_eq!(sdd.health_passed, None);
        // The megaraid disk: smartctl's own `device` says /dev/sdb, scsi; what we asked for wins.
        assert_eq!(megaraid4.grown_defects, Some(260));
        assert_eq!((megaraid5.health_passed, megaraid5.exit_status), (Some(false), 8));
        assert_eq!(megaraid5.reallocated_sectors, Some(304));
        assert_eq!(megaraid5.error, "");
        assert_eq!(
            (nvme0.health_passed, nvme0.critical_warning, nvme0.exit_status),
            (Some(false), Some(16), 8)
        );
    }

    #[test]
    fn readings_are_cached_until_the_interval_has_passed() {
        let runner = megaraid_host();
        let clock = FakeClock::new();
        let mut smart = probe(&runner, &clock);
        let first = collect(&mut smart).unwrap();
        assert_eq!(runner.calls().len(), 6);

        clock.advance(INTERVAL - Duration::from_nanos(1));
        assert_eq!(collect(&mut smart).unwrap(), first);
        assert_eq!(runner.calls().len(), 6, "nothing run before the interval");

        clock.advance(Duration::from_nanos(1));
        assert_eq!(collect(&mut smart).unwrap(), first);
        assert_eq!(runner.calls().len(), 12, "run again exactly at the interval");
        assert_eq!(runner.calls()[6], SCAN);

        clock.advance(Duration::from_secs(1));
        collect(&mut smart).unwrap();
        assert_eq!(runner.calls().len(), 12, "the interval counts from the last run");
    }

    use crate::probe::command::testing::logs;

    #[test]
    fn missing_smartctl_is_unavailable_logged_once_and_not_respawned_before_the_interval() {
        let runner = FakeRunner::default();
        runner.fail(SCAN, RunError::NotFound);
        let clock = FakeClock::new();
        let mut smart = probe(&runner, &clock);
        let log = logs(|| {
            for _ in 0..3 {
                match collect(&mut smart) {
                    Err(ProbeError::Unavailable(reason)) => {
                        assert_eq!(reason, "/usr/sbin/smartctl not found");
                    }
                    other => panic!("{other:?}"),
                }
                clock.advance(Duration::from_secs(10));
            }
            assert_eq!(runner.calls(), [SCAN], "spawned once");
            clock.advance(INTERVAL);
            assert!(matches!(collect(&mut smart), Err(ProbeError::Unavailable(_))));
            assert_eq!(runner.calls(), [SCAN, SCAN], "retried after the interval");
        });
        assert_eq!(log.matches("SMART unavailable").count(), 1, "{log}");
        assert!(log.contains("/usr/sbin/smartctl not found"), "{log}");
        assert!(log.contains("retry=30m"), "{log}");
    }

    #[test]
    fn smartctl_not_executable_is_unavailable() {
        let runner = FakeRunner::default();
        runner.fail(SCAN, RunError::PermissionDenied);
        let mut smart = probe(&runner, &FakeClock::new());
        match collect(&mut smart) {
            Err(ProbeError::Unavailable(reason)) => {
                assert_eq!(reason, "/usr/sbin/smartctl: not permitted to run it");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn disks_refused_for_lack_of_permission_make_smart_unavailable() {
        let runner = FakeRunner::default();
        runner.answer(SCAN, "synthetic/scan-open-megaraid.json", 0);
        for command in [
            "--json -a -n standby -d sat /dev/sda",
            "--json -a -n standby -d sat /dev/sdc",
            "--json -a -n standby -d megaraid,4 /dev/bus/0",
            "--json -a -n standby -d sat+megaraid,5 /dev/bus/0",
            "--json -a -n standby -d nvme /dev/nvme0",
        ] {
            runner.answer(command, "captured/open-failed-permission-denied.json", 2);
        }
        // /dev/sdd failed to open during the scan for another reason, so not every device
        // was refused: the probe reports the devices, each with its error.
        let data = collect(&mut probe(&runner, &FakeClock::new())).unwrap();
        assert!(data.devices.iter().all(|d| !d.error.is_empty()), "{data:?}");

        let scan = br#"{"devices": [{"name": "/dev/sda", "type": "sat", "protocol": "ATA"},
                                    {"name": "/dev/sdb", "type": "sat", "protocol": "ATA",
                                     "open_error": "Permission denied"}]}"#;
        runner.0.output(SCAN, RunOutput { stdout: scan.to_vec(), ..RunOutput::default() });
        match collect(&mut probe(&runner, &FakeClock::new())) {
            Err(ProbeError::Unavailable(reason)) => assert_eq!(
                reason,
                "smartctl is not permitted to open the disks (it needs root): device open failed \
                 or the device did not identify itself: Smartctl open device: /dev/vda [SAT] \
                 failed: Permission denied"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_device_that_times_out_is_that_devices_error() {
        let runner = megaraid_host();
        runner.fail(
            "--json -a -n standby -d sat /dev/sda",
            RunError::TimedOut(Duration::from_secs(20)),
        );
        let data = collect(&mut probe(&runner, &FakeClock::new())).unwrap();
        let sda = &data.devices[0];
        assert_eq!(sda.name, "/dev/sda");
        assert_eq!(sda.error, "smartctl timed out after 20s and was killed");
        assert_eq!(sda.health_passed, None);
        assert_eq!(data.devices[3].grown_defects, Some(260), "the others are still read");
    }

    #[test]
    fn a_scan_that_times_out_fails_and_is_not_retried_before_the_interval() {
        let runner = FakeRunner::default();
        runner.fail(SCAN, RunError::TimedOut(Duration::from_secs(20)));
        let clock = FakeClock::new();
        let mut smart = probe(&runner, &clock);
        for _ in 0..2 {
            match collect(&mut smart) {
                Err(ProbeError::Failed(reason)) => assert_eq!(
                    reason,
                    "smartctl --json --scan-open timed out after 20s and was killed"
                ),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(runner.calls(), [SCAN]);
    }

    #[test]
    fn no_devices_is_unavailable() {
        let runner = FakeRunner::default();
        runner.answer(SCAN, "captured/scan-open-no-devices.json", 0);
        match collect(&mut probe(&runner, &FakeClock::new())) {
            Err(ProbeError::Unavailable(reason)) => assert_eq!(reason, "smartctl found no devices"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn smartctl_without_json_support_is_unavailable() {
        let runner = FakeRunner::default();
        runner.0.output(
            SCAN,
            RunOutput {
                stdout: b"=======> UNRECOGNIZED OPTION: json\n".to_vec(),
                exit_code: 1,
                ..RunOutput::default()
            },
        );
        match collect(&mut probe(&runner, &FakeClock::new())) {
            Err(ProbeError::Unavailable(reason)) => assert_eq!(
                reason,
                "/usr/sbin/smartctl does not accept --json (smartmontools 7.0 or later needed)"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unreadable_device_output_is_that_devices_error() {
        let runner = megaraid_host();
        runner.0.output(
            "--json -a -n standby -d nvme /dev/nvme0",
            RunOutput {
                stdout: b"Segmentation fault".to_vec(),
                exit_code: 4,
                ..RunOutput::default()
            },
        );
        let data = collect(&mut probe(&runner, &FakeClock::new())).unwrap();
        let nvme0 = &data.devices[5];
        assert_eq!(nvme0.name, "/dev/nvme0");
        assert_eq!(nvme0.exit_status, 4);
        assert!(nvme0.error.starts_with("unreadable smartctl output: not JSON"), "{}", nvme0.error);
    }

    #[test]
    fn disabled_in_config_runs_nothing() {
        let runner = FakeRunner::default();
        let mut smart = Smart::with_runner(
            SmartConfig { enabled: false, ..config() },
            Box::new(runner.clone()),
            Box::new(FakeClock::new()),
        );
        match collect(&mut smart) {
            Err(ProbeError::Unavailable(reason)) => assert_eq!(reason, "disabled in config"),
            other => panic!("{other:?}"),
        }
        assert_eq!(runner.calls(), Vec::<String>::new());
    }

    /// The installed smartctl (Debian: /usr/sbin/smartctl) answers the scan with JSON the
    /// parser reads; a host without it gets a clean "not found". A VM may list no devices.
    #[test]
    fn real_smartctl_scan_is_parseable_json() {
        let runner = SmartctlCommand::new("/usr/sbin/smartctl");
        match runner.run(&["--json", "--scan-open"], Duration::from_secs(20)) {
            Ok(out) => {
                assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stdout));
                let devices = parse_scan(&out.stdout).unwrap();
                for device in devices {
                    assert!(device.name.starts_with("/dev/"), "{device:?}");
                    assert!(!device.device_type.is_empty(), "{device:?}");
                }
            }
            Err(RunError::NotFound) => eprintln!("smartctl not installed; skipped"),
            Err(err) => panic!("{err}"),
        }
    }

    /// The real smartctl on this host, end to end: readings, or a clean "unavailable"
    /// (a VM has no disks smartctl can open; a CI image may have no smartctl).
    #[test]
    fn real_smartctl_gives_data_or_unavailable() {
        let mut smart = Smart::new(SmartConfig::default());
        assert_eq!(smart.name(), "smart");
        match smart.collect(&HostRoot::live()) {
            Ok(probe_result::Data::Smart(data)) => assert!(!data.devices.is_empty()),
            Err(ProbeError::Unavailable(reason)) => eprintln!("unavailable: {reason}"),
            other => panic!("{other:?}"),
        }
    }
}
