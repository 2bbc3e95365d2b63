//! Network interfaces: link state, carrier, speed and duplex, the traffic and error counters,
//! and for a bonding master its mode and the state of each slave.
//!
//! Sources: `/proc/net/dev` for the counters, merged with `/sys/class/net/<if>/{operstate,
//! carrier,speed,duplex,address}`. Where `/proc/net/dev` is missing but sysfs is not (some captured
//! trees, some sandboxes), the interfaces are listed from `/sys/class/net` and the counters
//! read from `/sys/class/net/<if>/statistics/*`, 0 where absent. The loopback interface is
//! left out.
//!
//! Kernel quirks: reading `carrier` or `speed` of an interface that is down fails with
//! `EINVAL` (`net/core/net-sysfs.c`: both require `netif_running`), and drivers that do not
//! know the speed report `-1` (`SPEED_UNKNOWN`), which older kernels printed as the unsigned
//! `4294967295`. All of these read as "unknown". `duplex` fails the same way on a down link
//! and reads `unknown` when the driver cannot tell; both are reported as empty.
//!
//! Bonding: an interface is a bonding master when it has a `bonding/` directory or is listed
//! in `/sys/class/net/bonding_masters`. Its mode is the first word of `bonding/mode`
//! (`active-backup 1`), its active slave `bonding/active_slave` and its slaves
//! `bonding/slaves`. Each slave's `mii_status` and `link_failure_count` are read from the
//! slave's own `bonding_slave/` directory, found as `/sys/class/net/<slave>`, or through the
//! master's `lower_<slave>` (current kernels) or `slave_<slave>` (older kernels) link. Whatever
//! sysfs does not say is taken from `/proc/net/bonding/<bond>` when it exists (the only source
//! in some containers), with its long mode names mapped to the sysfs ones. A missing
//! `link_failure_count` reads as 0.

use std::path::Path;

use vigil_proto::v1::{Bond, BondSlave, NetworkData, NetworkInterface, probe_result};

use super::{Probe, ProbeError};
use crate::read;
use crate::root::HostRoot;

const LOOPBACK: &str = "lo";

/// The network probe.
#[derive(Debug, Default)]
pub struct Network;

impl Probe for Network {
    fn name(&self) -> &'static str {
        "network"
    }

    fn collect(&mut self, root: &HostRoot) -> Result<probe_result::Data, ProbeError> {
        let class_net = root.sys("class/net");
        let interfaces = match read::read_optional(&root.proc("net/dev")) {
            Ok(Some(text)) => parse_net_dev(&text),
            Ok(None) if class_net.is_dir() => from_sysfs(root, &class_net)?,
            Ok(None) => {
                return Err(ProbeError::Unavailable(format!(
                    "neither {} nor {} exists",
                    root.host_view(&root.proc("net/dev")),
                    root.host_view(&class_net)
                )));
            }
            Err(err) => return Err(ProbeError::from_read(root, &err)),
        };
        let masters = bonding_masters(&class_net);
        let interfaces = interfaces
            .into_iter()
            .filter(|interface| interface.name != LOOPBACK)
            .map(|mut interface| {
                let dir = class_net.join(&interface.name);
                add_link_state(&mut interface, &dir);
                if dir.join("bonding").is_dir() || masters.contains(&interface.name) {
                    interface.bond = Some(bond(root, &class_net, &interface.name));
                }
                interface
            })
            .collect();
        Ok(probe_result::Data::Network(NetworkData { interfaces }))
    }
}

/// Parses `/proc/net/dev`: two header lines, then `name: 16 counters` per interface (eight
/// receive, eight transmit). A large first counter can touch the colon (`eth0:123`).
pub(crate) fn parse_net_dev(text: &str) -> Vec<NetworkInterface> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let values: Vec<u64> =
                counters.split_whitespace().map(str::parse).collect::<Result<_, _>>().ok()?;
            if values.len() < 12 {
                return None;
            }
            Some(NetworkInterface {
                name: name.trim().to_owned(),
                rx_bytes: values[0],
                rx_packets: values[1],
                rx_errors: values[2],
                rx_dropped: values[3],
                tx_bytes: values[8],
                tx_packets: values[9],
                tx_errors: values[10],
                tx_dropped: values[11],
                ..NetworkInterface::default()
            })
        })
        .collect()
}

/// Interfaces from `/sys/class/net`, sorted by name. Entries that are not directories
/// (`bonding_masters`) are not interfaces.
fn from_sysfs(root: &HostRoot, class_net: &Path) -> Result<Vec<NetworkInterface>, ProbeError> {
    let entries = std::fs::read_dir(class_net)
        .map_err(|err| ProbeError::Failed(format!("{}: {err}", root.host_view(class_net))))?;
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().is_dir())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let stats = class_net.join(&name).join("statistics");
            let counter = |file: &str| read::attr::<u64>(&stats.join(file)).unwrap_or(0);
            NetworkInterface {
                rx_bytes: counter("rx_bytes"),
                tx_bytes: counter("tx_bytes"),
                rx_packets: counter("rx_packets"),
                tx_packets: counter("tx_packets"),
                rx_errors: counter("rx_errors"),
                tx_errors: counter("tx_errors"),
                rx_dropped: counter("rx_dropped"),
                tx_dropped: counter("tx_dropped"),
                name,
                ..NetworkInterface::default()
            }
        })
        .collect())
}

/// Fills in what sysfs knows about the link; an interface without a sysfs directory (another
/// network namespace's view) keeps its counters and empty link fields.
fn add_link_state(interface: &mut NetworkInterface, dir: &Path) {
    interface.oper_state = read::attr_string(&dir.join("operstate")).unwrap_or_default();
    interface.carrier = read::attr::<u8>(&dir.join("carrier")).map(|carrier| carrier != 0);
    interface.speed_mbps = read::attr::<i64>(&dir.join("speed")).and_then(speed_mbps);
    interface.mac_address = read::attr_string(&dir.join("address")).unwrap_or_default();
    interface.duplex = read::attr_string(&dir.join("duplex")).map(duplex).unwrap_or_default();
}

/// `full` or `half`; anything else (`unknown`) is empty.
fn duplex(raw: String) -> String {
    if raw == "full" || raw == "half" { raw } else { String::new() }
}

/// The names in `/sys/class/net/bonding_masters`; none when the file is absent (no bonding
/// driver loaded).
fn bonding_masters(class_net: &Path) -> Vec<String> {
    read::attr_string(&class_net.join("bonding_masters"))
        .map(|text| text.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A bonding master's mode, active slave and slaves, from sysfs with `/proc/net/bonding/<bond>`
/// filling the gaps (see the module doc).
fn bond(root: &HostRoot, class_net: &Path, name: &str) -> Bond {
    let bonding = class_net.join(name).join("bonding");
    let proc = match read::read_optional(&root.proc(&format!("net/bonding/{name}"))) {
        Ok(text) => text.map(|text| parse_proc_bonding(&text)).unwrap_or_default(),
        Err(err) => {
            tracing::debug!(%err, "bonding status not readable");
            ProcBond::default()
        }
    };
    let mode = read::attr_string(&bonding.join("mode"))
        .and_then(|mode| mode.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| proc.mode.clone());
    let active_slave = read::attr_string(&bonding.join("active_slave"))
        .unwrap_or_else(|| proc.active_slave.clone());
    let names: Vec<String> = match read::attr_string(&bonding.join("slaves")) {
        Some(slaves) => slaves.split_whitespace().map(str::to_owned).collect(),
        None => proc.slaves.iter().map(|slave| slave.name.clone()).collect(),
    };
    let slaves = names
        .into_iter()
        .map(|slave| {
            let from_proc = proc.slaves.iter().find(|known| known.name == slave);
            let dirs = [
                class_net.join(&slave),
                class_net.join(name).join(format!("lower_{slave}")),
                class_net.join(name).join(format!("slave_{slave}")),
            ];
            let sysfs = |file: &str| {
                dirs.iter().find_map(|dir| read::attr_string(&dir.join("bonding_slave").join(file)))
            };
            BondSlave {
                mii_status: sysfs("mii_status")
                    .or_else(|| from_proc.map(|known| known.mii_status.clone()))
                    .unwrap_or_default(),
                link_failure_count: sysfs("link_failure_count")
                    .and_then(|count| count.parse().ok())
                    .or_else(|| from_proc.map(|known| known.link_failure_count))
                    .unwrap_or(0),
                name: slave,
            }
        })
        .collect();
    Bond { mode, active_slave, slaves }
}

/// What `/proc/net/bonding/<bond>` says (`drivers/net/bonding/bond_procfs.c`).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct ProcBond {
    /// The sysfs mode name (`active-backup`).
    pub mode: String,
    /// Empty for `None` or when not shown.
    pub active_slave: String,
    pub slaves: Vec<BondSlave>,
}

/// Parses `/proc/net/bonding/<bond>`: a master section (`Bonding Mode:`, `Currently Active
/// Slave:`), then one section per `Slave Interface:` with its `MII Status:` and `Link Failure
/// Count:`. The master's own `MII Status:` line comes before any slave and is not a slave's.
pub(crate) fn parse_proc_bonding(text: &str) -> ProcBond {
    let mut bond = ProcBond::default();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else { continue };
        let value = value.trim();
        match (key.trim(), bond.slaves.last_mut()) {
            ("Bonding Mode", _) => bond.mode = mode_from_proc(value),
            ("Currently Active Slave", _) if value != "None" => {
                bond.active_slave = value.to_owned();
            }
            ("Slave Interface", _) => {
                bond.slaves.push(BondSlave { name: value.to_owned(), ..BondSlave::default() });
            }
            ("MII Status", Some(slave)) => slave.mii_status = value.to_owned(),
            ("Link Failure Count", Some(slave)) => {
                slave.link_failure_count = value.parse().unwrap_or(0);
            }
            _ => {}
        }
    }
    bond
}

/// The sysfs name of a mode as `/proc/net/bonding` spells it (`bond_main.c`
/// `bond_mode_name`); an unknown spelling is kept as it is.
fn mode_from_proc(text: &str) -> String {
    match text {
        "load balancing (round-robin)" => "balance-rr",
        "fault-tolerance (active-backup)" => "active-backup",
        "load balancing (xor)" => "balance-xor",
        "fault-tolerance (broadcast)" => "broadcast",
        "IEEE 802.3ad Dynamic link aggregation" => "802.3ad",
        "transmit load balancing" => "balance-tlb",
        "adaptive load balancing" => "balance-alb",
        other => other,
    }
    .to_owned()
}

/// A sysfs `speed` value in Mbit/s, `None` for "unknown" (`-1`, or `4294967295` from kernels
/// that printed it unsigned) and anything else outside `1..u32::MAX`.
pub(crate) fn speed_mbps(raw: i64) -> Option<u32> {
    u32::try_from(raw).ok().filter(|speed| *speed != 0 && *speed != u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0
  eth0:9876543210 5000    2    3    0     0          0        10  1234567    4000    4    5    0     0       0          0
";

    #[test]
    fn parses_net_dev() {
        let interfaces = parse_net_dev(NET_DEV);
        assert_eq!(interfaces.len(), 2);
        let eth0 = &interfaces[1];
        assert_eq!(eth0.name, "eth0");
        assert_eq!(eth0.rx_bytes, 9_876_543_210);
        assert_eq!(eth0.rx_packets, 5000);
        assert_eq!(eth0.rx_errors, 2);
        assert_eq!(eth0.rx_dropped, 3);
        assert_eq!(eth0.tx_bytes, 1_234_567);
        assert_eq!(eth0.tx_packets, 4000);
        assert_eq!(eth0.tx_errors, 4);
        assert_eq!(eth0.tx_dropped, 5);
    }

    #[test]
    fn unknown_speeds() {
        assert_eq!(speed_mbps(1000), Some(1000));
        assert_eq!(speed_mbps(-1), None);
        assert_eq!(speed_mbps(4_294_967_295), None);
        assert_eq!(speed_mbps(0), None);
    }

    #[test]
    fn link_down_reads_as_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("sys/class/net");
        let eth = net.join("eth1");
        std::fs::create_dir_all(eth.join("statistics")).unwrap();
        std::fs::write(eth.join("operstate"), "down\n").unwrap();
        std::fs::write(eth.join("speed"), "-1\n").unwrap();
        // A directory stands in for a file whose read fails (EINVAL on a real link).
        std::fs::create_dir(eth.join("carrier")).unwrap();
        std::fs::write(eth.join("address"), "52:54:00:12:34:56\n").unwrap();
        std::fs::write(eth.join("statistics/rx_bytes"), "42\n").unwrap();
        std::fs::write(net.join("bonding_masters"), "bond0\n").unwrap();
        std::fs::create_dir(net.join("lo")).unwrap();

        let root = HostRoot::new(dir.path().to_path_buf());
        let Ok(probe_result::Data::Network(data)) = Network.collect(&root) else {
            panic!("network probe failed");
        };
        assert_eq!(data.interfaces.len(), 1, "{data:?}");
        let eth1 = &data.interfaces[0];
        assert_eq!(eth1.name, "eth1");
        assert_eq!(eth1.oper_state, "down");
        assert_eq!(eth1.carrier, None);
        assert_eq!(eth1.speed_mbps, None);
        assert_eq!(eth1.mac_address, "52:54:00:12:34:56");
        assert_eq!(eth1.rx_bytes, 42);
        assert_eq!(eth1.tx_bytes, 0);
    }

    fn fixture(tree: &str) -> NetworkData {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(tree);
        match Network.collect(&HostRoot::new(dir)) {
            Ok(probe_result::Data::Network(data)) => data,
            other => panic!("{other:?}"),
        }
    }

    fn slave(name: &str, mii_status: &str, link_failure_count: u32) -> BondSlave {
        BondSlave { name: name.into(), mii_status: mii_status.into(), link_failure_count }
    }

    #[test]
    fn node_exporter_fixture_bonds() {
        let data = fixture("node-exporter");
        let names: Vec<&str> = data.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["bond0", "dmz", "eth0", "int"]);
        for interface in &data.interfaces {
            assert_eq!(interface.duplex, "full", "{}", interface.name);
        }
        // eth0 (a link to its device directory) is a plain interface, not a bond.
        assert_eq!(data.interfaces[2].bond, None);
        // The capture has no bonding/mode, bonding/active_slave or link_failure_count files,
        // and no /proc/net/bonding: mode and active slave are empty, failure counts 0.
        let bonds: Vec<&Bond> = data.interfaces.iter().filter_map(|i| i.bond.as_ref()).collect();
        assert_eq!(bonds.len(), 3);
        // bond0: a master without slaves (empty bonding/slaves).
        assert_eq!(*bonds[0], Bond::default());
        assert_eq!(
            *bonds[1],
            Bond {
                slaves: vec![slave("eth0", "up", 0), slave("eth4", "up", 0)],
                ..Bond::default()
            }
        );
        // int: slave eth1 is down (mii_status and operstate "down").
        assert_eq!(
            *bonds[2],
            Bond {
                slaves: vec![slave("eth5", "up", 0), slave("eth1", "down", 0)],
                ..Bond::default()
            }
        );
    }

    #[test]
    fn linux_procfs_fixture_duplex_and_no_bond() {
        let data = fixture("linux-procfs");
        let eth0 = data.interfaces.iter().find(|i| i.name == "eth0").expect("eth0");
        assert_eq!(eth0.duplex, "full");
        assert_eq!(eth0.bond, None);
    }

    #[test]
    fn duplex_unknown_is_empty() {
        assert_eq!(duplex("full".into()), "full");
        assert_eq!(duplex("half".into()), "half");
        assert_eq!(duplex("unknown".into()), "");
    }

    const PROC_BONDING: &str = "\
Ethernet Channel Bonding Driver: v5.15.0 (September 2021)

Bonding Mode: fault-tolerance (active-backup)
Primary Slave: None
Currently Active Slave: eth1
MII Status: up
MII Polling Interval (ms): 100
Up Delay (ms): 0
Down Delay (ms): 0
Peer Notification Delay (ms): 0

Slave Interface: eth0
MII Status: down
Speed: Unknown
Duplex: Unknown
Link Failure Count: 3
Permanent HW addr: 52:54:00:12:34:56
Slave queue ID: 0

Slave Interface: eth1
MII Status: up
Speed: 1000 Mbps
Duplex: full
Link Failure Count: 0
Permanent HW addr: 52:54:00:12:34:57
Slave queue ID: 0
";

    #[test]
    fn parses_proc_net_bonding() {
        assert_eq!(
            parse_proc_bonding(PROC_BONDING),
            ProcBond {
                mode: "active-backup".into(),
                active_slave: "eth1".into(),
                slaves: vec![slave("eth0", "down", 3), slave("eth1", "up", 0)],
            }
        );
        let lacp = parse_proc_bonding(
            "Bonding Mode: IEEE 802.3ad Dynamic link aggregation\nCurrently Active Slave: None\n",
        );
        assert_eq!(lacp.mode, "802.3ad");
        assert_eq!(lacp.active_slave, "");
        assert_eq!(mode_from_proc("something new"), "something new");
    }

    /// A master listed in `bonding_masters` whose sysfs has no `bonding/` directory and whose
    /// slaves are not in this namespace: everything comes from `/proc/net/bonding`. A second
    /// master has sysfs, which wins over proc where both know a value.
    #[test]
    fn proc_net_bonding_fills_what_sysfs_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let net = dir.path().join("sys/class/net");
        std::fs::create_dir_all(net.join("bond0")).unwrap();
        std::fs::write(net.join("bonding_masters"), "bond0 bond1\n").unwrap();
        let bond1 = net.join("bond1");
        std::fs::create_dir_all(bond1.join("bonding")).unwrap();
        std::fs::write(bond1.join("bonding/mode"), "802.3ad 4\n").unwrap();
        std::fs::write(bond1.join("bonding/active_slave"), "\n").unwrap();
        std::fs::write(bond1.join("bonding/slaves"), "eth2 eth3\n").unwrap();
        std::fs::write(bond1.join("duplex"), "unknown\n").unwrap();
        let eth2 = net.join("eth2/bonding_slave");
        std::fs::create_dir_all(&eth2).unwrap();
        std::fs::write(eth2.join("mii_status"), "up\n").unwrap();
        std::fs::write(eth2.join("link_failure_count"), "2\n").unwrap();
        // eth3 only through the master's lower_ link, without link_failure_count.
        let eth3 = bond1.join("lower_eth3/bonding_slave");
        std::fs::create_dir_all(&eth3).unwrap();
        std::fs::write(eth3.join("mii_status"), "down\n").unwrap();
        let proc_bonding = dir.path().join("proc/net/bonding");
        std::fs::create_dir_all(&proc_bonding).unwrap();
        std::fs::write(proc_bonding.join("bond0"), PROC_BONDING).unwrap();
        std::fs::write(
            proc_bonding.join("bond1"),
            "Bonding Mode: IEEE 802.3ad Dynamic link aggregation\n\n\
             Slave Interface: eth2\nMII Status: down\nLink Failure Count: 9\n\n\
             Slave Interface: eth3\nMII Status: up\nLink Failure Count: 5\n",
        )
        .unwrap();

        let root = HostRoot::new(dir.path().to_path_buf());
        let Ok(probe_result::Data::Network(data)) = Network.collect(&root) else {
            panic!("network probe failed");
        };
        let names: Vec<&str> = data.interfaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["bond0", "bond1", "eth2"]);
        assert_eq!(
            data.interfaces[0].bond,
            Some(Bond {
                mode: "active-backup".into(),
                active_slave: "eth1".into(),
                slaves: vec![slave("eth0", "down", 3), slave("eth1", "up", 0)],
            })
        );
        assert_eq!(
            data.interfaces[1].bond,
            Some(Bond {
                mode: "802.3ad".into(),
                active_slave: String::new(),
                slaves: vec![slave("eth2", "up", 2), slave("eth3", "down", 5)],
            })
        );
        assert_eq!(data.interfaces[1].duplex, "");
        assert_eq!(data.interfaces[2].bond, None, "a slave is not a master");
    }

    #[test]
    fn nothing_to_read_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        assert!(matches!(Network.collect(&root), Err(ProbeError::Unavailable(_))));
    }
}
