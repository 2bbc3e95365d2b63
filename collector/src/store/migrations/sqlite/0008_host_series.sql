-- The roll-up series each host has, with when each was first stored: what the per-host
-- series caps (`ingest.max_series_per_host`, `ingest.max_new_series_per_day`) count. Filled
-- from the roll-ups already held.
CREATE TABLE host_series (
    host_id       TEXT NOT NULL,
    series        TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (host_id, series)
);
INSERT INTO host_series (host_id, series, first_seen_ms)
SELECT host_id, series, MIN(bucket_start_ms) FROM rollups_5m GROUP BY host_id, series;
