//! The collector's own Prometheus metrics: every name is a constant here (no string literals
//! scattered through the code), described once at start-up, rendered at `GET /metrics`.
//! Names follow `vigil_<what>_<unit>[_total]`; labels are fixed and low-cardinality.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const REPORTS_TOTAL: &str = "vigil_ingest_reports_total";
pub const REPORTS_REJECTED_TOTAL: &str = "vigil_ingest_reports_rejected_total";
pub const COMMIT_DURATION_SECONDS: &str = "vigil_ingest_commit_duration_seconds";
pub const COMMIT_BATCH_REPORTS: &str = "vigil_ingest_commit_batch_reports";
pub const STREAMS_OPEN: &str = "vigil_ingest_streams_open";
pub const HOSTS_REGISTERED_TOTAL: &str = "vigil_hosts_registered_total";
pub const CLONED_IDENTITY_TOTAL: &str = "vigil_cloned_identity_total";
pub const HOSTS: &str = "vigil_hosts";
pub const RETENTION_DELETED_TOTAL: &str = "vigil_retention_deleted_rows_total";
pub const BUILD_INFO: &str = "vigil_build_info";
pub const TLS_HANDSHAKE_FAILURES_TOTAL: &str = "vigil_tls_handshake_failures_total";
pub const CONNECTIONS_REFUSED_TOTAL: &str = "vigil_connections_refused_total";
pub const CERTLESS_CONNECTIONS: &str = "vigil_grpc_certless_connections";
pub const DESCRIPTOR_LIMIT: &str = "vigil_open_files_limit";
pub const ENROLLMENTS_TOTAL: &str = "vigil_enrollment_calls_total";
pub const INCIDENT_CHANGES_TOTAL: &str = "vigil_incident_changes_total";
pub const HOST_SERIES_DROPPED_TOTAL: &str = "vigil_host_series_dropped_total";
pub const ROLLUP_READINGS_REFUSED_TOTAL: &str = "vigil_ingest_rollup_readings_refused_total";
pub const HOST_ROLLUP_READINGS_REFUSED_TOTAL: &str = "vigil_host_rollup_readings_refused_total";
pub const RUNNER_LEASE_HELD: &str = "vigil_runner_lease_held";
pub const NOTIFICATIONS_TOTAL: &str = "vigil_notification_attempts_total";
pub const EVALUATION_LATENCY_SECONDS: &str = "vigil_incident_evaluation_latency_seconds";
pub const INCIDENT_EVALUATION_ERRORS_TOTAL: &str = "vigil_incident_evaluation_errors_total";
pub const API_UNAUTHENTICATED_TOTAL: &str = "vigil_api_unauthenticated_requests_total";
pub const LOG_LINES_SUPPRESSED_TOTAL: &str = "vigil_log_lines_suppressed_total";
pub const BACKGROUND_TASK_ACTIVATIONS_TOTAL: &str = "vigil_background_task_activations_total";
pub const BACKGROUND_TASK_LAST_DURATION_SECONDS: &str =
    "vigil_background_task_last_duration_seconds";

/// Installs the global recorder and returns the handle `/metrics` renders from.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COMMIT_DURATION_SECONDS.to_owned()),
            &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(EVALUATION_LATENCY_SECONDS.to_owned()),
            &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5],
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(COMMIT_BATCH_REPORTS.to_owned()),
            &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
        )?
        .install_recorder()?;
    describe();
    // Counters of rare events exist from the start, at 0, so `rate()` and alerts see them
    // before the first one happens.
    for reason in crate::events::RejectReason::ALL {
        metrics::counter!(REPORTS_REJECTED_TOTAL, "reason" => reason.as_str()).absolute(0);
    }
    for outcome in ["delivered", "retry", "failed"] {
        metrics::counter!(NOTIFICATIONS_TOTAL, "outcome" => outcome).absolute(0);
    }
    for (listener, reason) in crate::events::CONNECTION_REFUSALS {
        metrics::counter!(CONNECTIONS_REFUSED_TOTAL, "listener" => listener.as_str(), "reason" => reason)
            .absolute(0);
    }
    metrics::counter!(HOST_SERIES_DROPPED_TOTAL).absolute(0);
    for reason in ["missing_token", "unknown_token"] {
        metrics::counter!(API_UNAUTHENTICATED_TOTAL, "reason" => reason).absolute(0);
    }
    for event in crate::events::THROTTLED_EVENTS {
        metrics::counter!(LOG_LINES_SUPPRESSED_TOTAL, "event" => event).absolute(0);
    }
    for cap in ["name_too_long", "host_full", "day_full"] {
        metrics::counter!(ROLLUP_READINGS_REFUSED_TOTAL, "cap" => cap).absolute(0);
    }
    metrics::counter!(INCIDENT_EVALUATION_ERRORS_TOTAL).absolute(0);
    metrics::gauge!(RUNNER_LEASE_HELD).set(0.0);
    metrics::gauge!(CERTLESS_CONNECTIONS).set(0.0);
    metrics::gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REPORTS_TOTAL, "Reports received, by outcome (stored, duplicate).");
    describe_counter!(REPORTS_REJECTED_TOTAL, "Reports or streams rejected, by reason.");
    describe_histogram!(
        COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Time to durably commit one batch of reports (group commit)."
    );
    describe_histogram!(COMMIT_BATCH_REPORTS, "Reports per committed batch.");
    describe_gauge!(STREAMS_OPEN, "Agent report streams currently open.");
    describe_counter!(HOSTS_REGISTERED_TOTAL, "Hosts registered at first contact.");
    describe_counter!(
        CLONED_IDENTITY_TOTAL,
        "Times two agent instances were seen reporting at once as one host."
    );
    describe_gauge!(HOSTS, "Known hosts by status (up, silent, stopped, new).");
    describe_counter!(RETENTION_DELETED_TOTAL, "Rows deleted by retention, by table.");
    describe_gauge!(BUILD_INFO, "Always 1; the collector's version as a label.");
    describe_counter!(
        TLS_HANDSHAKE_FAILURES_TOTAL,
        "TLS handshakes refused on the agents' port (plaintext, bad or foreign certificate, timeout)."
    );
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections refused or cut, and calls refused on them, by listener and reason \
         (over a cap, past a deadline, no client certificate)."
    );
    describe_gauge!(
        CERTLESS_CONNECTIONS,
        "gRPC connections without a client certificate open now (at most \
         grpc.max_certless_connections)."
    );
    describe_gauge!(
        DESCRIPTOR_LIMIT,
        "The collector's file-descriptor limit (RLIMIT_NOFILE) after start-up raised it."
    );
    describe_histogram!(
        EVALUATION_LATENCY_SECONDS,
        Unit::Seconds,
        "From receiving a report to committing what it means for incidents (classified, \
         conditions tracked, incidents opened or resolved)."
    );
    describe_counter!(
        INCIDENT_EVALUATION_ERRORS_TOTAL,
        "Stored reports whose incident evaluation failed and was skipped (the next report of \
         the host is evaluated as usual)."
    );
    describe_counter!(
        ROLLUP_READINGS_REFUSED_TOTAL,
        "Readings not stored as roll-ups because their host is at a series cap, by cap."
    );
    describe_counter!(
        HOST_ROLLUP_READINGS_REFUSED_TOTAL,
        "Readings of one host not stored as roll-ups because it is at a series cap."
    );
    describe_counter!(
        HOST_SERIES_DROPPED_TOTAL,
        "Per-host series not exported because a host exceeded metrics.max_series_per_host."
    );
    describe_gauge!(
        RUNNER_LEASE_HELD,
        "1 on the replica holding the runner lease (SLA clocks, notifications, fleet series)."
    );
    describe_counter!(
        NOTIFICATIONS_TOTAL,
        "Notification delivery attempts, by outcome (delivered, retry, failed)."
    );
    describe_counter!(ENROLLMENTS_TOTAL, "Enroll and Renew calls, by call and outcome.");
    describe_counter!(
        API_UNAUTHENTICATED_TOTAL,
        "API requests refused for their token, by reason (missing_token, unknown_token)."
    );
    describe_counter!(
        LOG_LINES_SUPPRESSED_TOTAL,
        "Rejection log lines left out because the same source was logged less than a minute \
         before, by event; the rejections themselves are counted in full by their own counter."
    );
    describe_counter!(
        BACKGROUND_TASK_ACTIVATIONS_TOTAL,
        "Finished runs of each background task (retention, sla_sweep, notifications, silence, \
         revocation), by task and outcome (ok, error)."
    );
    describe_gauge!(
        BACKGROUND_TASK_LAST_DURATION_SECONDS,
        Unit::Seconds,
        "How long the latest finished run of each background task took, by task."
    );
    describe_counter!(
        INCIDENT_CHANGES_TOTAL,
        "Incident changes made by the collector (opened, reopened, level, event, resolved, \
         flapping, grouped), by change and level."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_documented() {
        let doc = include_str!("../../docs/metrics.md");
        for name in [
            REPORTS_TOTAL,
            REPORTS_REJECTED_TOTAL,
            COMMIT_DURATION_SECONDS,
            COMMIT_BATCH_REPORTS,
            STREAMS_OPEN,
            HOSTS_REGISTERED_TOTAL,
            CLONED_IDENTITY_TOTAL,
            HOSTS,
            RETENTION_DELETED_TOTAL,
            BUILD_INFO,
            TLS_HANDSHAKE_FAILURES_TOTAL,
            CONNECTIONS_REFUSED_TOTAL,
            DESCRIPTOR_LIMIT,
            CERTLESS_CONNECTIONS,
            ENROLLMENTS_TOTAL,
            API_UNAUTHENTICATED_TOTAL,
            LOG_LINES_SUPPRESSED_TOTAL,
            BACKGROUND_TASK_ACTIVATIONS_TOTAL,
            BACKGROUND_TASK_LAST_DURATION_SECONDS,
        ] {
            assert!(doc.contains(&format!("`{name}`")), "{name} missing from docs/metrics.md");
        }
    }
}
