//! How `vigilctl tasks` shows the collector's background tasks (`GET /api/v1/tasks`): one line
//! per task with its period, how often it ran and failed, whether it runs now, and how its
//! latest run went.

use serde_json::Value;

use super::{ago, cell, cell_within, table};

fn duration_ms(v: &Value) -> String {
    v.as_u64().map(|ms| format!("{ms}ms")).unwrap_or_else(|| "-".into())
}

/// Renders `GET /api/v1/tasks`, in the order the collector registered them.
pub fn tasks_table(list: &Value, now_ms: i64) -> String {
    let rows: Vec<Vec<String>> = list["tasks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let outcome = match (t["last_outcome"].as_str(), t["last_summary"].as_str()) {
                (Some(outcome), Some(_)) => {
                    format!("{outcome}: {}", cell_within(&t["last_summary"], 80))
                }
                _ => "-".into(),
            };
            vec![
                cell(&t["name"]),
                cell(&t["period"]),
                cell(&t["activations"]),
                cell(&t["failures"]),
                if t["running"].as_bool() == Some(true) { "running" } else { "idle" }.into(),
                match t["last_started_ms"].as_i64() {
                    Some(at) => format!("{} ({})", ago(Some(at), now_ms), cell(&t["last_reason"])),
                    None => "never".into(),
                },
                duration_ms(&t["last_duration_ms"]),
                outcome,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no background tasks\n".into();
    }
    table(
        &["TASK", "PERIOD", "RUNS", "FAILED", "STATE", "LAST STARTED", "TOOK", "LAST OUTCOME"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_task_line_says_how_its_last_run_went() {
        let list = json!({ "tasks": [
            { "name": "sla_sweep", "period": "5s", "activations": 12, "failures": 1,
              "running": false, "last_started_ms": 97_000, "last_reason": "on_demand",
              "last_duration_ms": 3, "last_outcome": "error",
              "last_summary": "store unavailable\u{1b}[31m" },
            { "name": "retention", "period": "1h", "activations": 0, "failures": 0,
              "running": true, "last_started_ms": null, "last_reason": null,
              "last_duration_ms": null, "last_outcome": null, "last_summary": null },
        ]});
        let text = tasks_table(&list, 100_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TASK"), "{text}");
        assert!(lines[1].contains("3s ago (on_demand)"), "{text}");
        assert!(lines[1].contains("3ms"), "{text}");
        assert!(lines[1].contains("error: store unavailable"), "{text}");
        assert!(!text.contains('\u{1b}'), "no escape reaches the terminal: {text}");
        assert!(lines[2].contains("running") && lines[2].contains("never"), "{text}");
        assert_eq!(tasks_table(&json!({ "tasks": [] }), 0), "no background tasks\n");
    }
}
