//! Network interfaces: link state, carrier and speed, and the traffic and error counters.
//!
//! Sources: `/proc/net/dev` for the counters, merged with `/sys/class/net/<if>/{operstate,
//! carrier,speed,address}`. Where `/proc/net/dev` is missing but sysfs is not (some captured
//! trees, some sandboxes), the interfaces are listed from `/sys/class/net` and the counters
//! read from `/sys/class/net/<if>/statistics/*`, 0 where absent. The loopback interface is
//! left out.
//!
//! Kernel quirks: reading `carrier` or `speed` of an interface that is down fails with
//! `EINVAL` (`net/core/net-sysfs.c`: both require `netif_running`), and drivers that do not
//! know the speed report `-1` (`SPEED_UNKNOWN`), which older kernels printed as the unsigned
//! `4294967295`. All of these read as "unknown".

use std::path::Path;

use vigil_proto::v1::{NetworkData, NetworkInterface, probe_result};

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
        let interfaces = interfaces
            .into_iter()
            .filter(|interface| interface.name != LOOPBACK)
            .map(|mut interface| {
                let dir = class_net.join(&interface.name);
                add_link_state(&mut interface, &dir);
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

    #[test]
    fn nothing_to_read_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path().to_path_buf());
        assert!(matches!(Network.collect(&root), Err(ProbeError::Unavailable(_))));
    }
}
