use std::time::Instant;

use vigil_proto::v1::IpmiSensor;

use super::*;

const INTERVAL: Duration = Duration::from_secs(5 * 60);
const SDR_CMD: &str = "sdr elist";
const SEL_CMD: &str = "sel elist";

fn fixture(path: &str) -> Vec<u8> {
    let full = format!("{}/tests/fixtures/ipmitool/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&full).unwrap_or_else(|err| panic!("{full}: {err}"))
}

/// The shared fake runner, answering with this module's fixtures.
#[derive(Clone)]
struct FakeRunner(crate::probe::command::testing::FakeRunner);

impl Default for FakeRunner {
    fn default() -> Self {
        Self(crate::probe::command::testing::FakeRunner::new("ipmitool", Duration::from_secs(20)))
    }
}

impl FakeRunner {
    fn answer(&self, command: &str, fixture_path: &str) -> &Self {
        self.0.output(command, RunOutput { stdout: fixture(fixture_path), ..RunOutput::default() });
        self
    }
    fn fail(&self, command: &str, err: RunError) -> &Self {
        self.0.fail(command, err);
        self
    }
    fn exit(&self, command: &str, stderr: &[u8], exit_code: i32) -> &Self {
        self.0.output(
            command,
            RunOutput { stderr: stderr.to_vec(), exit_code, ..RunOutput::default() },
        );
        self
    }
    fn calls(&self) -> Vec<String> {
        self.0.calls()
    }
}

impl CommandRunner for FakeRunner {
    fn run(&self, args: &[&str], timeout: Duration) -> Result<RunOutput, RunError> {
        self.0.run(args, timeout)
    }
}

use crate::clock::testing::FakeClock;

fn config() -> IpmiConfig {
    IpmiConfig {
        enabled: true,
        ipmitool: "/usr/bin/ipmitool".into(),
        interval: INTERVAL,
        timeout: Duration::from_secs(20),
    }
}

fn probe(runner: &FakeRunner, clock: &FakeClock) -> Ipmi {
    Ipmi::with_runner(config(), Box::new(runner.clone()), Box::new(clock.clone()))
}

fn collect(ipmi: &mut Ipmi) -> Result<IpmiData, ProbeError> {
    match ipmi.collect(&HostRoot::live())? {
        probe_result::Data::Ipmi(data) => Ok(data),
        other => panic!("not IPMI data: {other:?}"),
    }
}

fn sensor(name: &str, status: &str, entity: &str, value: Option<f64>, unit: &str) -> IpmiSensor {
    IpmiSensor {
        name: name.to_owned(),
        status: status.to_owned(),
        entity: entity.to_owned(),
        value,
        unit: unit.to_owned(),
        ..IpmiSensor::default()
    }
}

fn discrete(name: &str, status: &str, entity: &str, text: &str) -> IpmiSensor {
    IpmiSensor { text: text.to_owned(), ..sensor(name, status, entity, None, "") }
}

fn sdr(path: &str) -> Vec<IpmiSensor> {
    parse_sdr_elist(&fixture(&format!("synthetic/{path}")))
}

#[test]
fn healthy_server_sensors() {
    assert_eq!(
        sdr("sdr-elist-healthy.txt"),
        [
            sensor("Inlet Temp", "ok", "7.1", Some(22.0), "degrees C"),
            sensor("CPU1 Temp", "ok", "3.1", Some(41.0), "degrees C"),
            sensor("Fan1A", "ok", "7.1", Some(5040.0), "RPM"),
            sensor("Fan1B", "ok", "7.1", Some(4920.0), "RPM"),
            sensor("Voltage 1", "ok", "10.1", Some(230.0), "Volts"),
            sensor("Current 1", "ok", "10.1", Some(0.6), "Amps"),
            sensor("Pwr Consumption", "ok", "7.1", Some(112.0), "Watts"),
            discrete("PS1 Status", "ok", "10.1", "Presence detected"),
            discrete("PS2 Status", "ok", "10.2", "Presence detected"),
            discrete("Intrusion", "ok", "23.1", ""),
            discrete("Fan Redundancy", "ok", "7.1", "Fully Redundant"),
        ]
    );
}

#[test]
fn failed_power_supply() {
    assert_eq!(
        sdr("sdr-elist-failed-psu.txt"),
        [
            sensor("Inlet Temp", "ok", "7.1", Some(23.0), "degrees C"),
            sensor("Voltage 1", "ok", "10.1", Some(230.0), "Volts"),
            sensor("Voltage 2", "lcr", "10.2", Some(0.0), "Volts"),
            discrete("PS1 Status", "ok", "10.1", "Presence detected"),
            discrete(
                "PS2 Status",
                "ok",
                "10.2",
                "Presence detected, Failure detected, Power Supply AC lost"
            ),
            discrete("PS Redundancy", "ok", "7.1", "Redundancy Lost"),
        ]
    );
}

#[test]
fn fan_below_threshold() {
    assert_eq!(
        sdr("sdr-elist-fan-below-threshold.txt"),
        [
            sensor("Fan1A", "ok", "7.1", Some(5040.0), "RPM"),
            sensor("Fan2A", "lcr", "7.1", Some(360.0), "RPM"),
            sensor("Fan3A", "lnc", "7.1", Some(1080.0), "RPM"),
            discrete("Fan Redundancy", "ok", "7.1", "Redundancy Degraded"),
        ]
    );
}

#[test]
fn chassis_intrusion() {
    assert_eq!(
        sdr("sdr-elist-chassis-intrusion.txt")[1],
        discrete("Intrusion", "ok", "23.1", "General Chassis intrusion")
    );
}

#[test]
fn sensors_without_a_reading() {
    assert_eq!(
        sdr("sdr-elist-no-reading.txt"),
        [
            sensor("CPU1 Temp", "ok", "3.1", Some(41.0), "degrees C"),
            discrete("CPU2 Temp", "ns", "3.2", "No Reading"),
            discrete("Fan6A", "ns", "7.1", "Disabled"),
            discrete("PS2 Status", "ns", "10.2", "No Reading"),
        ]
    );
}

fn event(id: u32, at: &str, sensor: &str, description: &str, direction: &str) -> IpmiEvent {
    IpmiEvent {
        record_id: id,
        timestamp: at.to_owned(),
        sensor: sensor.to_owned(),
        description: description.to_owned(),
        direction: direction.to_owned(),
    }
}

#[test]
fn sel_entries() {
    let events = parse_sel_elist(&fixture("synthetic/sel-elist-later.txt"));
    assert_eq!(events.len(), 10);
    assert_eq!(
        events[4],
        event(
            5,
            "03/12/2026 11:02:13",
            "Fan Fan2A",
            "Lower Critical going low; Reading 360 < Threshold 600 RPM",
            "Asserted"
        )
    );
    assert_eq!(
        events[6..],
        [
            event(
                7,
                "03/13/2026 09:30:00",
                "Power Supply PS2 Status",
                "Failure detected",
                "Deasserted"
            ),
            event(
                8,
                "Pre-Init 0000000042",
                "System Event #0x83",
                "Timestamp Clock Sync",
                "Asserted"
            ),
            event(9, "03/13/2026 09:31:12", "", "OEM record c1", ""),
            event(
                10,
                "03/13/2026 09:31:15",
                "Physical Security Intrusion",
                "General Chassis intrusion",
                "Deasserted"
            ),
        ]
    );
}

fn failing_host() -> FakeRunner {
    let runner = FakeRunner::default();
    runner
        .answer(SDR_CMD, "synthetic/sdr-elist-failed-psu.txt")
        .answer(SEL_CMD, "synthetic/sel-elist.txt");
    runner
}

#[test]
fn runs_sdr_then_sel_and_reports_each_event_once() {
    let runner = failing_host();
    let clock = FakeClock::new();
    let mut ipmi = probe(&runner, &clock);
    assert_eq!(ipmi.timeout(), Some(Duration::from_secs(40)), "two calls are due");

    let first = collect(&mut ipmi).unwrap();
    assert_eq!(runner.calls(), [SDR_CMD, SEL_CMD]);
    assert_eq!(first.sensors, sdr("sdr-elist-failed-psu.txt"));
    let ids: Vec<u32> = first.events.iter().map(|e| e.record_id).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        first.events[1],
        event(2, "03/12/2026 10:14:55", "Power Supply PS2 Status", "Failure detected", "Asserted")
    );
    assert_eq!(ipmi.timeout(), None, "nothing due before the interval");

    // Between runs: the sensors again, the events not.
    clock.advance(INTERVAL - Duration::from_nanos(1));
    let cached = collect(&mut ipmi).unwrap();
    assert_eq!((cached.sensors, cached.events), (first.sensors.clone(), vec![]));
    assert_eq!(runner.calls().len(), 2, "nothing run before the interval");

    // The next run: only the entries above the highest id seen.
    runner.answer(SEL_CMD, "synthetic/sel-elist-later.txt");
    clock.advance(Duration::from_nanos(1));
    let second = collect(&mut ipmi).unwrap();
    assert_eq!(runner.calls(), [SDR_CMD, SEL_CMD, SDR_CMD, SEL_CMD]);
    let ids: Vec<u32> = second.events.iter().map(|e| e.record_id).collect();
    assert_eq!(ids, [7, 8, 9, 10]);

    // Unchanged SEL: nothing new.
    clock.advance(INTERVAL);
    assert_eq!(collect(&mut ipmi).unwrap().events, []);

    // Cleared SEL (highest id went down): everything in it is new.
    runner.answer(SEL_CMD, "synthetic/sel-elist.txt");
    clock.advance(INTERVAL);
    assert_eq!(collect(&mut ipmi).unwrap().events.len(), 6);
}

#[test]
fn the_first_run_reports_only_the_latest_entries() {
    let mut log = String::new();
    for id in 1..=0x30 {
        log.push_str(&format!(
            "{id:4x} | 03/12/2026 | 10:14:55 | Fan Fan1A | Lower Critical going low | Asserted\n"
        ));
    }
    let runner = FakeRunner::default();
    runner.answer(SDR_CMD, "synthetic/sdr-elist-healthy.txt");
    runner.0.output(SEL_CMD, RunOutput { stdout: log.into_bytes(), ..RunOutput::default() });
    let data = collect(&mut probe(&runner, &FakeClock::new())).unwrap();
    let ids: Vec<u32> = data.events.iter().map(|e| e.record_id).collect();
    assert_eq!(ids, (0x30 - FIRST_RUN_EVENTS as u32 + 1..=0x30).collect::<Vec<_>>());
}

use crate::probe::command::testing::logs;

#[test]
fn missing_ipmitool_is_unavailable_logged_once_and_not_respawned_before_the_interval() {
    let runner = FakeRunner::default();
    runner.fail(SDR_CMD, RunError::NotFound);
    let clock = FakeClock::new();
    let mut ipmi = probe(&runner, &clock);
    let log = logs(|| {
        for _ in 0..3 {
            match collect(&mut ipmi) {
                Err(ProbeError::Unavailable(reason)) => {
                    assert_eq!(reason, "ipmitool not found at /usr/bin/ipmitool");
                }
                other => panic!("{other:?}"),
            }
            clock.advance(Duration::from_secs(10));
        }
        assert_eq!(runner.calls(), [SDR_CMD], "spawned once");
        clock.advance(INTERVAL);
        assert!(matches!(collect(&mut ipmi), Err(ProbeError::Unavailable(_))));
        assert_eq!(runner.calls(), [SDR_CMD, SDR_CMD], "retried after the interval");
    });
    assert_eq!(log.matches("IPMI unavailable").count(), 1, "{log}");
    assert!(log.contains("ipmitool not found at /usr/bin/ipmitool"), "{log}");
    assert!(log.contains("retry=5m"), "{log}");
}

#[test]
fn no_bmc_is_unavailable() {
    let runner = FakeRunner::default();
    runner.exit(SDR_CMD, &fixture("captured/no-device.stderr"), 1);
    match collect(&mut probe(&runner, &FakeClock::new())) {
        Err(ProbeError::Unavailable(reason)) => assert_eq!(reason, "no IPMI device"),
        other => panic!("{other:?}"),
    }
    assert_eq!(runner.calls(), [SDR_CMD], "the SEL is not asked for");
}

#[test]
fn other_failures_name_the_command_and_ipmitools_message() {
    let runner = FakeRunner::default();
    runner.exit(SDR_CMD, b"\nError obtaining SDR info: Timeout\n", 1);
    match collect(&mut probe(&runner, &FakeClock::new())) {
        Err(ProbeError::Failed(reason)) => assert_eq!(
            reason,
            "ipmitool sdr elist exited with status 1: Error obtaining SDR info: Timeout"
        ),
        other => panic!("{other:?}"),
    }
    runner.fail(SDR_CMD, RunError::TimedOut(Duration::from_secs(20)));
    match collect(&mut probe(&runner, &FakeClock::new())) {
        Err(ProbeError::Failed(reason)) => {
            assert_eq!(reason, "ipmitool sdr elist timed out after 20s and was killed");
        }
        other => panic!("{other:?}"),
    }
    runner.0.output(
        SDR_CMD,
        RunOutput { stdout: b"Segmentation fault\n".to_vec(), ..RunOutput::default() },
    );
    match collect(&mut probe(&runner, &FakeClock::new())) {
        Err(ProbeError::Failed(reason)) => assert_eq!(
            reason,
            "ipmitool sdr elist: no sensor line in its output: \"Segmentation fault\""
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreadable_sel_keeps_the_sensors_and_reports_its_events_later() {
    let runner = failing_host();
    runner.fail(SEL_CMD, RunError::TimedOut(Duration::from_secs(20)));
    let clock = FakeClock::new();
    let mut ipmi = probe(&runner, &clock);
    let data = collect(&mut ipmi).unwrap();
    assert_eq!((data.sensors.len(), data.events.len()), (6, 0));
    runner.answer(SEL_CMD, "synthetic/sel-elist.txt");
    clock.advance(INTERVAL);
    assert_eq!(collect(&mut ipmi).unwrap().events.len(), 6, "still the first SEL read");
}

/// The real runner against a stand-in that hangs (a busy loop, not `sleep`, which the shared
/// runner's own test counts): killed and reported.
#[test]
fn a_hung_ipmitool_is_killed_by_the_shared_runner() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ipmitool");
    std::fs::write(&script, "#!/bin/sh\nwhile :; do :; done\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = IpmiConfig { ipmitool: script, timeout: Duration::from_millis(200), ..config() };
    let mut ipmi = Ipmi::new(config);
    let started = Instant::now();
    match ipmi.collect(&HostRoot::live()) {
        Err(ProbeError::Failed(reason)) => {
            assert_eq!(reason, "ipmitool sdr elist timed out after 200ms and was killed");
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn not_run_under_a_fixture_root_or_when_disabled() {
    let runner = FakeRunner::default();
    let mut ipmi = probe(&runner, &FakeClock::new());
    let dir = tempfile::tempdir().unwrap();
    match ipmi.collect(&HostRoot::new(dir.path().to_path_buf())) {
        Err(ProbeError::Unavailable(reason)) => {
            assert_eq!(reason, "ipmitool is not run under --root");
        }
        other => panic!("{other:?}"),
    }
    let mut disabled = Ipmi::with_runner(
        IpmiConfig { enabled: false, ..config() },
        Box::new(runner.clone()),
        Box::new(FakeClock::new()),
    );
    assert_eq!(disabled.timeout(), None);
    match collect(&mut disabled) {
        Err(ProbeError::Unavailable(reason)) => assert_eq!(reason, "disabled in config"),
        other => panic!("{other:?}"),
    }
    assert_eq!(runner.calls(), Vec::<String>::new());
}

/// The installed ipmitool on this host, end to end: readings, or a clean "unavailable".
#[test]
fn real_ipmitool_gives_data_or_unavailable() {
    let mut ipmi = Ipmi::new(IpmiConfig::default());
    assert_eq!(ipmi.name(), "ipmi");
    match ipmi.collect(&HostRoot::live()) {
        Ok(probe_result::Data::Ipmi(data)) => eprintln!("{} sensors", data.sensors.len()),
        Err(ProbeError::Unavailable(reason)) => eprintln!("unavailable: {reason}"),
        other => panic!("{other:?}"),
    }
}
