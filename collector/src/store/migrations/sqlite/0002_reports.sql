-- What each agent instance sent: a receipt per report, the latest report per host, and
-- 5-minute roll-ups of the readings.
CREATE TABLE agent_instances (
    host_id       TEXT NOT NULL REFERENCES hosts (id),
    instance      TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    last_seen_ms  BIGINT NOT NULL,
    -- Receive time of the newest report this instance sent live (not replayed).
    last_live_ms  BIGINT,
    max_seq       BIGINT NOT NULL,
    PRIMARY KEY (host_id, instance)
);

CREATE TABLE report_receipts (
    host_id         TEXT NOT NULL,
    instance        TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    collected_at_ms BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    replayed        BOOLEAN NOT NULL,
    PRIMARY KEY (host_id, instance, seq)
);
CREATE INDEX report_receipts_received ON report_receipts (received_at_ms);

CREATE TABLE latest_reports (
    host_id         TEXT PRIMARY KEY REFERENCES hosts (id),
    instance        TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    collected_at_ms BIGINT NOT NULL,
    received_at_ms  BIGINT NOT NULL,
    -- The report as encoded protobuf (vigil.v1.Report).
    report          BLOB NOT NULL
);

CREATE TABLE rollups_5m (
    host_id         TEXT NOT NULL,
    series          TEXT NOT NULL,
    bucket_start_ms BIGINT NOT NULL,
    min_value       DOUBLE PRECISION NOT NULL,
    max_value       DOUBLE PRECISION NOT NULL,
    sum_value       DOUBLE PRECISION NOT NULL,
    sample_count    BIGINT NOT NULL,
    PRIMARY KEY (host_id, series, bucket_start_ms)
);
CREATE INDEX rollups_5m_bucket ON rollups_5m (bucket_start_ms);

-- The host's timeline of notable occurrences (cloned identity, goodbye, ...). `dedupe_key`
-- makes recording the same occurrence twice a no-op.
CREATE TABLE host_events (
    id         TEXT PRIMARY KEY,
    host_id    TEXT NOT NULL REFERENCES hosts (id),
    at_ms      BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    dedupe_key TEXT NOT NULL,
    UNIQUE (host_id, kind, dedupe_key)
);
CREATE INDEX host_events_host ON host_events (host_id, at_ms);
