//! System rules: sustained CPU load and memory pressure (utilisation: they open only after 3
//! reports), processes the kernel killed for lack of memory, an unsynchronised clock, and the
//! network (links that went down, bond slaves that lost their link). Resources are `cpu`,
//! `memory`, `clock` and the interface name.
//!
//! A NIC without carrier is only a fault if it had carrier before (memory) or an operator
//! named it as one that must have a link: hosts have unplugged ports, and those are not down.
//! Virtual interfaces (container veths, bridges, tunnels) come and go with what runs on them
//! and are left alone unless named.

use vigil_proto::v1::{ClockData, CpuData, MemoryData, NetworkData, NetworkInterface};

use super::memory::{Marks, counter_events};
use super::text::{bytes, decimal, percent, text};
use super::{FaultLevel, Findings, HostMemory, RuleDef, ThresholdUnit};

pub(super) const CPU_USAGE: RuleDef =
    RuleDef::state("cpu.usage", FaultLevel::L3, "share of CPU time busy at or above the threshold")
        .utilisation()
        .threshold(0.95, ThresholdUnit::Ratio);
pub(super) const MEMORY_PRESSURE: RuleDef = RuleDef::state(
    "memory.pressure",
    FaultLevel::L3,
    "available memory below the threshold share of total, or memory pressure (PSI some, \
     60 s) at or above 20%",
)
.utilisation()
.threshold(0.05, ThresholdUnit::Ratio);
pub(super) const OOM_KILL: RuleDef = RuleDef::event(
    "memory.oom_kill",
    FaultLevel::L3,
    "the kernel killed processes for lack of memory (its OOM kill count rose)",
);
pub(super) const CLOCK_UNSYNCHRONISED: RuleDef = RuleDef::state(
    "clock.unsynchronised",
    FaultLevel::L4,
    "the kernel does not consider the clock synchronised",
)
.open_after(3);
pub(super) const LINK_DOWN: RuleDef = RuleDef::state(
    "network.link_down",
    FaultLevel::L2,
    "a NIC has no carrier or is down, that had carrier before or is in `names` (virtual \
     interfaces only if named)",
)
.takes_names();
pub(super) const BOND_SLAVE_DOWN: RuleDef = RuleDef::state(
    "network.bond_slave_down",
    FaultLevel::L2,
    "a bond slave's MII status is not `up` (the bond lost a link); resource is the slave",
);

pub(super) const RULES: &[RuleDef] =
    &[CPU_USAGE, MEMORY_PRESSURE, OOM_KILL, CLOCK_UNSYNCHRONISED, LINK_DOWN, BOND_SLAVE_DOWN];

/// Memory pressure stall (share of time some task waited for memory, 60 s average, in
/// percent) from which the host is short of memory whatever `MemAvailable` says.
const MEMORY_PSI_SOME_PERCENT: f64 = 20.0;

/// Name prefixes of virtual interfaces: container and VM plumbing, overlay networks, tunnels.
const VIRTUAL_INTERFACE_PREFIXES: &[&str] = &[
    "veth", "docker", "br-", "virbr", "vnet", "tap", "tun", "cali", "flannel", "cni", "lxc",
    "vxlan", "wg", "kube-", "cilium", "weave", "dummy",
];

pub(super) fn cpu(data: &CpuData, findings: &mut Findings) {
    let busy = data.usage_ratio;
    findings.fire_when(&CPU_USAGE, "cpu", |rule| {
        (busy >= rule.threshold).then(|| {
            format!(
                "cpu {} busy (threshold {}), load {} on {} CPUs",
                percent(busy),
                percent(rule.threshold),
                decimal(data.load1),
                data.logical_cpus
            )
        })
    });
}

pub(super) fn memory(data: &MemoryData, memory: &mut HostMemory, findings: &mut Findings) {
    findings.fire_when(&MEMORY_PRESSURE, "memory", |rule| memory_pressure(data, rule.threshold));
    let oom_kills = [("memory", data.oom_kills)];
    counter_events(&OOM_KILL, "OOM kills", oom_kills, memory, findings);
}

/// `memory 3.2% available (512 MiB of 16 GiB; threshold 5%), pressure 25%` when the host is
/// short of memory by either measure.
fn memory_pressure(data: &MemoryData, threshold: f64) -> Option<String> {
    let available =
        (data.total_bytes > 0).then(|| data.available_bytes as f64 / data.total_bytes as f64);
    let low = available.is_some_and(|ratio| ratio < threshold);
    let stalled = data.pressure_some_avg60.is_some_and(|psi| psi >= MEMORY_PSI_SOME_PERCENT);
    if !low && !stalled {
        return None;
    }
    let mut summary = match available {
        Some(ratio) => format!(
            "memory {} available ({} of {}; threshold {})",
            percent(ratio),
            bytes(data.available_bytes),
            bytes(data.total_bytes),
            percent(threshold)
        ),
        None => "memory".to_owned(),
    };
    if let Some(psi) = data.pressure_some_avg60 {
        summary.push_str(&format!(
            ", pressure {}% (threshold {}%)",
            decimal(psi),
            decimal(MEMORY_PSI_SOME_PERCENT)
        ));
    }
    Some(summary)
}

pub(super) fn clock(data: &ClockData, findings: &mut Findings) {
    if !data.synchronized {
        findings.fire(&CLOCK_UNSYNCHRONISED, "clock", |_| {
            format!(
                "clock not synchronised (estimated error {} s, maximum error {} s)",
                decimal(data.estimated_error_seconds),
                decimal(data.max_error_seconds)
            )
        });
    }
}

pub(super) fn network(data: &NetworkData, memory: &mut HostMemory, findings: &mut Findings) {
    let mut had_carrier = Marks::new(&mut memory.nics_with_carrier);
    for nic in &data.interfaces {
        let name = text(&nic.name);
        if name == "lo" {
            continue;
        }
        let carrier_before = had_carrier.was_marked(&name);
        if carrier_before || nic.carrier == Some(true) {
            had_carrier.mark(&name);
        }
        if is_down(nic) {
            findings.fire_when(&LINK_DOWN, &name, |rule| {
                let watched = rule.watches(&nic.name);
                let judged = watched || (carrier_before && !is_virtual(&nic.name));
                judged.then(|| link_down_summary(nic, &name, watched))
            });
        }
        bond_slaves(nic, &name, findings);
    }
}

fn is_down(nic: &NetworkInterface) -> bool {
    nic.carrier == Some(false) || matches!(nic.oper_state.as_str(), "down" | "lowerlayerdown")
}

fn is_virtual(name: &str) -> bool {
    VIRTUAL_INTERFACE_PREFIXES.iter().any(|prefix| name.starts_with(prefix))
}

/// `eth1 link down (operstate down, no carrier; had carrier before)`.
fn link_down_summary(nic: &NetworkInterface, name: &str, watched: bool) -> String {
    let carrier = match nic.carrier {
        Some(true) => "carrier",
        Some(false) => "no carrier",
        None => "carrier unknown",
    };
    let why = if watched { "must have a link" } else { "had carrier before" };
    format!("{name} link down (operstate {}, {carrier}; {why})", text(&nic.oper_state))
}

fn bond_slaves(nic: &NetworkInterface, bond: &str, findings: &mut Findings) {
    let Some(bonding) = &nic.bond else { return };
    let up = bonding.slaves.iter().filter(|slave| slave.mii_status == "up").count();
    for slave in &bonding.slaves {
        if slave.mii_status.is_empty() || slave.mii_status == "up" {
            continue;
        }
        let name = text(&slave.name);
        findings.fire(&BOND_SLAVE_DOWN, &name, |_| {
            format!(
                "{name} in bond {bond} is {} (link failures {}); {up} of {} slaves up",
                text(&slave.mii_status),
                slave.link_failure_count,
                bonding.slaves.len()
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use vigil_proto::v1::probe_result::Data;
    use vigil_proto::v1::{Bond, BondSlave};

    use super::*;
    use crate::classify::testing::{fired, report, rules_with, run, run_once};
    use crate::classify::{FindingKind, RuleOverride, classify};

    fn cpu_data(usage_ratio: f64) -> Data {
        Data::Cpu(CpuData { usage_ratio, load1: 7.5, logical_cpus: 8, ..CpuData::default() })
    }

    #[test]
    fn cpu_at_threshold() {
        let findings = run_once([cpu_data(0.95)]);
        assert_eq!(fired(&findings), [("cpu.usage", "cpu", FaultLevel::L3)]);
        assert_eq!(findings[0].summary, "cpu 95% busy (threshold 95%), load 7.5 on 8 CPUs");
        assert_eq!(run_once([cpu_data(0.9499)]), []);
        let rules =
            rules_with("cpu.usage", RuleOverride { threshold: Some(0.8), ..Default::default() });
        let findings = classify(&report([cpu_data(0.8)]), &mut HostMemory::default(), &rules);
        assert_eq!(fired(&findings), [("cpu.usage", "cpu", FaultLevel::L3)]);
    }

    fn memory_data(available_percent: u64, psi: Option<f64>) -> Data {
        Data::Memory(MemoryData {
            total_bytes: 100 << 30,
            available_bytes: available_percent << 30,
            pressure_some_avg60: psi,
            ..MemoryData::default()
        })
    }

    #[test]
    fn memory_pressure_by_available_or_psi() {
        let findings = run_once([memory_data(4, Some(1.0))]);
        assert_eq!(fired(&findings), [("memory.pressure", "memory", FaultLevel::L3)]);
        assert_eq!(
            findings[0].summary,
            "memory 4% available (4 GiB of 100 GiB; threshold 5%), pressure 1% (threshold 20%)"
        );
        assert_eq!(run_once([memory_data(5, Some(19.9))]), []);
        assert_eq!(run_once([memory_data(50, Some(20.0))]).len(), 1);
        assert_eq!(run_once([memory_data(50, None)]), []);
    }

    #[test]
    fn oom_kills_rise_as_events() {
        let oom = |kills| {
            Data::Memory(MemoryData {
                total_bytes: 1,
                available_bytes: 1,
                oom_kills: kills,
                ..MemoryData::default()
            })
        };
        let mut memory = HostMemory::default();
        assert_eq!(run(&mut memory, [oom(Some(0))]), []);
        let findings = run(&mut memory, [oom(Some(2))]);
        assert_eq!(fired(&findings), [("memory.oom_kill", "memory", FaultLevel::L3)]);
        assert_eq!(findings[0].kind, FindingKind::Event);
        assert_eq!(findings[0].summary, "memory: OOM kills rose by 2 to 2");
        assert_eq!(run(&mut memory, [oom(Some(2))]), []);
        assert_eq!(run(&mut memory, [oom(None)]), []);
        assert_eq!(run(&mut memory, [oom(Some(3))]).len(), 1);
    }

    #[test]
    fn clock_not_synchronised() {
        let clock = |synchronized| {
            Data::Clock(ClockData { synchronized, max_error_seconds: 16.0, ..ClockData::default() })
        };
        let findings = run_once([clock(false)]);
        assert_eq!(fired(&findings), [("clock.unsynchronised", "clock", FaultLevel::L4)]);
        assert_eq!(run_once([clock(true)]), []);
    }

    fn nic(name: &str, carrier: Option<bool>, oper_state: &str) -> NetworkInterface {
        NetworkInterface {
            name: name.into(),
            carrier,
            oper_state: oper_state.into(),
            ..NetworkInterface::default()
        }
    }

    fn network_data(interfaces: Vec<NetworkInterface>) -> Data {
        Data::Network(NetworkData { interfaces })
    }

    #[test]
    fn nic_without_carrier_history_is_not_down() {
        let mut memory = HostMemory::default();
        let unplugged =
            network_data(vec![nic("eth1", Some(false), "down"), nic("eth2", None, "down")]);
        assert_eq!(run(&mut memory, [unplugged.clone()]), []);
        assert_eq!(run(&mut memory, [unplugged]), []);
    }

    #[test]
    fn nic_that_had_carrier_goes_down() {
        let mut memory = HostMemory::default();
        assert_eq!(run(&mut memory, [network_data(vec![nic("eth0", Some(true), "up")])]), []);
        let findings = run(&mut memory, [network_data(vec![nic("eth0", Some(false), "down")])]);
        assert_eq!(fired(&findings), [("network.link_down", "eth0", FaultLevel::L2)]);
        assert_eq!(
            findings[0].summary,
            "eth0 link down (operstate down, no carrier; had carrier before)"
        );
        // Down by operstate alone (carrier unreadable on a down link), still remembered.
        let findings = run(&mut memory, [network_data(vec![nic("eth0", None, "down")])]);
        assert_eq!(fired(&findings), [("network.link_down", "eth0", FaultLevel::L2)]);
        // Gone from the report: forgotten; back without carrier: not judged.
        assert_eq!(run(&mut memory, [network_data(vec![])]), []);
        assert_eq!(run(&mut memory, [network_data(vec![nic("eth0", Some(false), "down")])]), []);
    }

    #[test]
    fn named_nic_is_always_watched() {
        let rules = rules_with(
            "network.link_down",
            RuleOverride { names: Some(vec!["eth3".into(), "veth0".into()]), ..Default::default() },
        );
        let data = network_data(vec![
            nic("eth3", Some(false), "down"),
            nic("eth4", Some(false), "down"),
            nic("veth0", Some(false), "down"),
        ]);
        let findings = classify(&report([data]), &mut HostMemory::default(), &rules);
        assert_eq!(
            fired(&findings),
            [
                ("network.link_down", "eth3", FaultLevel::L2),
                ("network.link_down", "veth0", FaultLevel::L2)
            ]
        );
        assert_eq!(
            findings[0].summary,
            "eth3 link down (operstate down, no carrier; must have a link)"
        );
    }

    #[test]
    fn virtual_and_loopback_interfaces_are_left_alone() {
        let mut memory = HostMemory::default();
        let up =
            network_data(vec![nic("lo", Some(true), "unknown"), nic("docker0", Some(true), "up")]);
        let down =
            network_data(vec![nic("lo", Some(false), "down"), nic("docker0", Some(false), "down")]);
        assert_eq!(run(&mut memory, [up]), []);
        assert_eq!(run(&mut memory, [down]), []);
    }

    #[test]
    fn bond_slave_down() {
        let slave = |name: &str, mii: &str| BondSlave {
            name: name.into(),
            mii_status: mii.into(),
            link_failure_count: 2,
        };
        let bond0 = NetworkInterface {
            bond: Some(Bond {
                slaves: vec![slave("eth0", "up"), slave("eth1", "down"), slave("eth2", "")],
                ..Bond::default()
            }),
            ..nic("bond0", Some(true), "up")
        };
        let findings = run_once([network_data(vec![bond0])]);
        assert_eq!(fired(&findings), [("network.bond_slave_down", "eth1", FaultLevel::L2)]);
        assert_eq!(
            findings[0].summary,
            "eth1 in bond bond0 is down (link failures 2); 1 of 3 slaves up"
        );
    }
}
