//! systemd units over D-Bus: the configured units and every failed one, with their active
//! state, sub-state, load state, state-change time and (for services) restart count.
//!
//! It talks to `org.freedesktop.systemd1` on the system bus as `systemctl` does, and reads
//! only what the report needs: `Manager.LoadUnit(name)` for each configured unit (which, unlike
//! `GetUnit`, also answers for a unit that is not loaded right now, and says `not-found` for one
//! that does not exist), `Manager.ListUnitsFiltered(["failed"])` for the failed ones, then the
//! properties `ActiveState`, `SubState`, `LoadState`, `StateChangeTimestamp` of
//! `org.freedesktop.systemd1.Unit` and `NRestarts` of `org.freedesktop.systemd1.Service`.
//!
//! zbus 6 has no blocking API, so the calls run on a small current-thread Tokio runtime made for
//! each reading, inside the probe's blocking thread. The whole reading is bounded by a timeout.

use std::time::Duration;

use vigil_proto::v1::UnitStatus;
use zbus::{Connection, OwnedObjectPath, OwnedVariant};

use crate::config::UnitCheckConfig;

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is not set.
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

const SYSTEMD: &str = "org.freedesktop.systemd1";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const UNIT: &str = "org.freedesktop.systemd1.Unit";
const SERVICE: &str = "org.freedesktop.systemd1.Service";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// The system bus address: `DBUS_SYSTEM_BUS_ADDRESS`, else [`DEFAULT_SYSTEM_BUS`].
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_owned())
}

/// The configured units in config order, then every failed unit that is not configured, by
/// name. `Err` says why systemd could not be read (no bus, no systemd on it, a call failed).
pub fn read_units(
    address: &str,
    units: &[UnitCheckConfig],
    timeout: Duration,
) -> Result<Vec<UnitStatus>, String> {
    if let Some(path) = unix_path(address)
        && !std::path::Path::new(path).exists()
    {
        return Err(format!("no system bus: {path} not found"));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime for D-Bus: {e}"))?;
    runtime.block_on(async {
        match tokio::time::timeout(timeout, read(address, units, timeout)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no answer from systemd within {}",
                humantime::format_duration(timeout)
            )),
        }
    })
}

/// The socket path of a `unix:path=...` address.
fn unix_path(address: &str) -> Option<&str> {
    let rest = address.strip_prefix("unix:")?;
    rest.split(',').find_map(|pair| pair.strip_prefix("path="))
}

async fn read(
    address: &str,
    units: &[UnitCheckConfig],
    timeout: Duration,
) -> Result<Vec<UnitStatus>, String> {
    let conn = zbus::connection::Builder::address(address)
        .method_timeout(timeout)
        .build()
        .await
        .map_err(|e| format!("cannot connect to the system bus at {address}: {e}"))?;
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        let path: OwnedObjectPath = manager_call(&conn, "LoadUnit", &(unit.name.as_str(),))
            .await
            .map_err(|e| format!("LoadUnit({}): {e}", unit.name))?;
        let mut status = unit_status(&conn, &unit.name, &path).await?;
        status.critical = unit.critical;
        status.configured = true;
        out.push(status);
    }
    type Listed = (
        String,
        String,
        String,
        String,
        String,
        String,
        OwnedObjectPath,
        u32,
        String,
        OwnedObjectPath,
    );
    let mut failed: Vec<Listed> = manager_call(&conn, "ListUnitsFiltered", &(vec!["failed"],))
        .await
        .map_err(|e| format!("ListUnitsFiltered: {e}"))?;
    failed.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, _, _, _, _, _, path, ..) in failed {
        if units.iter().any(|u| u.name == name) {
            continue;
        }
        out.push(unit_status(&conn, &name, &path).await?);
    }
    Ok(out)
}

/// A Manager method's reply body.
async fn manager_call<B, R>(conn: &Connection, method: &str, body: &B) -> zbus::Result<R>
where
    B: serde::Serialize + zbus::DynamicType,
    R: for<'d> zbus::wire::DynamicDeserialize<'d>,
{
    let reply = conn.call_method(Some(SYSTEMD), MANAGER_PATH, Some(MANAGER), method, body).await?;
    reply.body().deserialize::<R>()
}

/// The properties of the unit at `path`; `critical` and `configured` are left false.
async fn unit_status(
    conn: &Connection,
    name: &str,
    path: &OwnedObjectPath,
) -> Result<UnitStatus, String> {
    let get = async |interface: &str, property: &str| -> Result<OwnedVariant, String> {
        let reply = conn
            .call_method(Some(SYSTEMD), path, Some(PROPERTIES), "Get", &(interface, property))
            .await
            .map_err(|e| format!("{name}: reading {property}: {e}"))?;
        reply.body().deserialize::<OwnedVariant>().map_err(|e| format!("{name}: {property}: {e}"))
    };
    let text = async |property: &str| -> Result<String, String> {
        String::try_from(get(UNIT, property).await?).map_err(|e| format!("{name}: {property}: {e}"))
    };
    let active_state = text("ActiveState").await?;
    let sub_state = text("SubState").await?;
    let load_state = text("LoadState").await?;
    let changed_us = u64::try_from(get(UNIT, "StateChangeTimestamp").await?)
        .map_err(|e| format!("{name}: StateChangeTimestamp: {e}"))?;
    // Only services restart; a unit that is not loaded has no Service interface to ask.
    let restarts = if name.ends_with(".service") && load_state == "loaded" {
        u32::try_from(get(SERVICE, "NRestarts").await?)
            .map_err(|e| format!("{name}: NRestarts: {e}"))?
    } else {
        0
    };
    Ok(UnitStatus {
        name: name.to_owned(),
        active_state,
        sub_state,
        load_state,
        restarts,
        critical: false,
        configured: false,
        state_change_unix_ms: i64::try_from(changed_us / 1000).unwrap_or(i64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_paths() {
        assert_eq!(unix_path(DEFAULT_SYSTEM_BUS), Some("/run/dbus/system_bus_socket"));
        assert_eq!(unix_path("unix:guid=1,path=/tmp/bus"), Some("/tmp/bus"));
        assert_eq!(unix_path("unix:abstract=/tmp/dbus-x"), None);
        assert_eq!(unix_path("tcp:host=localhost,port=1"), None);
    }

    #[test]
    fn a_missing_socket_is_no_bus() {
        assert_eq!(
            read_units("unix:path=/nonexistent/vigil-bus", &[], Duration::from_secs(1)),
            Err("no system bus: /nonexistent/vigil-bus not found".to_owned())
        );
    }
}
