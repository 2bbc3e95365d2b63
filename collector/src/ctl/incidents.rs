//! How `vigilctl` shows incidents and maintenance windows. Summaries carry what agents sent, so
//! every cell goes through [`crate::sanitize::for_terminal`] first: a control character or
//! escape sequence from a host never reaches the operator's terminal.

use std::fmt::Write;

use serde_json::Value;

use super::{ago, cell, cell_within, table};
use crate::sanitize::{for_terminal, for_terminal_text};

fn state(i: &Value) -> String {
    let mut state = cell(&i["state"]);
    if i["flapping"].as_bool() == Some(true) {
        state.push_str(",flapping");
    }
    if !i["parent_id"].is_null() {
        state.push_str(&format!(",under INC-{:06}", i["parent_id"].as_i64().unwrap_or(0)));
    }
    state
}

fn place(i: &Value) -> String {
    let host = i["hostname"].as_str().map(for_terminal).unwrap_or_else(|| "(site)".into());
    format!("{}/{}/{host}", cell(&i["customer"]), cell(&i["site"]))
}

/// Renders `GET /api/v1/incidents`: worst level first, then newest.
pub fn incidents_table(list: &Value, now_ms: i64) -> String {
    let mut incidents: Vec<&Value> = list["incidents"].as_array().into_iter().flatten().collect();
    if incidents.is_empty() {
        return "no incidents match\n".into();
    }
    incidents.sort_by_key(|i| (i["level"].as_u64().unwrap_or(9), -i["id"].as_i64().unwrap_or(0)));
    let rows = incidents
        .iter()
        .map(|i| {
            vec![
                cell(&i["number"]),
                format!("L{}", cell(&i["level"])),
                state(i),
                ago(i["opened_at_ms"].as_i64(), now_ms),
                place(i),
                cell(&i["rule"]),
                cell_within(&i["resource"], 32),
                cell_within(&i["summary"], 80),
            ]
        })
        .collect();
    table(
        &[
            "INCIDENT",
            "LEVEL",
            "STATE",
            "OPENED",
            "CUSTOMER/SITE/HOST",
            "RULE",
            "RESOURCE",
            "SUMMARY",
        ],
        rows,
    )
}

/// Renders `GET /api/v1/incidents/{id}` with its timeline.
pub fn incident_detail(i: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}  L{}  {}", cell(&i["number"]), cell(&i["level"]), state(i));
    let _ = writeln!(out, "  {}", i["summary"].as_str().map(for_terminal_text).unwrap_or_default());
    let fields = [
        ("where", place(i)),
        ("host id", cell(&i["host_id"])),
        ("rule", cell(&i["rule"])),
        ("resource", cell(&i["resource"])),
        ("kind", cell(&i["kind"])),
        ("opened", cell(&i["opened_at"])),
        ("recurrences", cell(&i["recurrences"])),
        (
            "acknowledged",
            format!("{} by {}", cell(&i["acknowledged_at"]), cell(&i["acknowledged_by"])),
        ),
        ("assignee", cell(&i["assignee"])),
        ("resolved", format!("{} by {}", cell(&i["resolved_at"]), cell(&i["resolved_by"]))),
        (
            "service record",
            i["resolution_note"].as_str().map_or_else(|| "-".into(), for_terminal_text),
        ),
    ];
    for (name, value) in fields {
        let _ = writeln!(out, "  {name:<15} {value}");
    }
    if let Some(grouped) = i["grouped"].as_array().filter(|g| !g.is_empty()) {
        let numbers: Vec<String> = grouped.iter().map(cell).collect();
        let _ = writeln!(out, "  {:<15} {}", "grouped here", numbers.join(", "));
    }
    let sla = &i["sla"];
    if sla.is_object() {
        let met = |v: &Value| match v.as_bool() {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "pending",
        };
        let _ = writeln!(out, "  {:<15} {}", "support tier", cell(&sla["tier"]));
        for what in ["response", "resolution"] {
            let _ = writeln!(
                out,
                "  {:<15} due {} ({})",
                what,
                cell(&sla[what]["due"]),
                met(&sla[what]["met"])
            );
        }
    }
    if let Some(deliveries) = i["deliveries"].as_array().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "\nNotifications:");
        for d in deliveries {
            let _ = writeln!(
                out,
                "  {:<24} {:<16} {:<10} attempts {}  {}",
                cell(&d["event_id"]),
                cell(&d["receiver"]),
                cell(&d["state"]),
                cell(&d["attempts"]),
                d["last_error"].as_str().map(for_terminal_text).unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "\nTimeline:");
    for t in i["timeline"].as_array().into_iter().flatten() {
        let detail = t["detail"].as_str().unwrap_or("");
        let mut lines = detail.lines();
        let first = lines.next().map(for_terminal_text).unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}  {:<12} {:<24} {first}",
            cell(&t["at"]),
            cell(&t["kind"]),
            cell(&t["actor"])
        );
        for line in lines {
            let _ = writeln!(out, "  {:<63} {}", "", for_terminal_text(line));
        }
    }
    out
}

/// Renders `GET /api/v1/maintenance`.
pub fn maintenance_table(list: &Value) -> String {
    let windows: Vec<&Value> = list["windows"].as_array().into_iter().flatten().collect();
    if windows.is_empty() {
        return "no maintenance windows\n".into();
    }
    let rows = windows
        .iter()
        .map(|w| {
            let scope = match (w["hostname"].as_str(), w["site"].as_str()) {
                (Some(host), _) => format!("{}/host {}", cell(&w["customer"]), for_terminal(host)),
                (None, Some(site)) => format!("{}/{}", cell(&w["customer"]), for_terminal(site)),
                (None, None) => cell(&w["customer"]),
            };
            let rules = w["rules"]
                .as_array()
                .filter(|r| !r.is_empty())
                .map_or_else(|| "all".into(), |r| r.iter().map(cell).collect::<Vec<_>>().join(","));
            let minutes = w["duration_ms"].as_i64().unwrap_or(0) / 60_000;
            vec![
                cell(&w["id"]),
                scope,
                rules,
                format!("{} {}", cell(&w["start_local"]), cell(&w["time_zone"])),
                format!("{minutes}m"),
                cell(&w["recurrence"]),
                if w["active"].as_bool() == Some(true) { "yes".into() } else { "no".into() },
                cell(&w["next_start"]),
                cell_within(&w["reason"], 60),
            ]
        })
        .collect();
    table(&["ID", "SCOPE", "RULES", "START", "LENGTH", "REPEATS", "ACTIVE", "NEXT", "REASON"], rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn agent_text_cannot_reach_the_terminal_as_escape_sequences() {
        let list = json!({ "incidents": [{
            "id": 7, "number": "INC-000007", "level": 2, "state": "open", "flapping": true,
            "parent_id": null, "opened_at_ms": 0, "customer": "acme", "site": "hq",
            "hostname": "srv\u{1b}[2J01", "rule": "raid.degraded", "resource": "md0",
            "summary": "md0 degraded\nrm -rf"
        }]});
        let out = incidents_table(&list, 60_000);
        assert!(!out.contains('\u{1b}'), "{out}");
        assert!(out.contains("srv\\u{1b}[2J01"), "{out}");
        assert!(out.contains("open,flapping"), "{out}");
        assert_eq!(out.lines().count(), 2, "{out}");
    }
}
