-- Classification state, incidents with their timelines, and maintenance windows.

-- Per host: what the classifier remembers between reports (counter baselines, NICs seen with
-- carrier, latched alarms) and the incident stage's condition tracking (hysteresis streaks,
-- flapping history). Both are JSON owned by the code that writes them.
CREATE TABLE host_eval (
    host_id        TEXT PRIMARY KEY REFERENCES hosts (id),
    memory         TEXT NOT NULL,
    conditions     TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL
);

-- One row per incident; `id` is the service number (INC-000042).
CREATE TABLE incidents (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    -- customer|host-or-site|rule|resource: at most one open incident per fingerprint.
    fingerprint         TEXT NOT NULL,
    customer_id         TEXT NOT NULL REFERENCES customers (id),
    site_id             TEXT NOT NULL REFERENCES sites (id),
    -- NULL for a site-level incident.
    host_id             TEXT REFERENCES hosts (id),
    rule                TEXT NOT NULL,
    resource            TEXT NOT NULL,
    level               INTEGER NOT NULL,
    summary             TEXT NOT NULL,
    -- 'state' (clears by itself) or 'event' (something happened; a person resolves it).
    kind                TEXT NOT NULL,
    -- open | acknowledged | resolved | closed
    state               TEXT NOT NULL,
    flapping            BOOLEAN NOT NULL DEFAULT FALSE,
    recurrences         INTEGER NOT NULL DEFAULT 0,
    -- Incident this one is grouped under (a site outage, a silent host, a degraded array).
    parent_id           INTEGER REFERENCES incidents (id),
    opened_at_ms        BIGINT NOT NULL,
    updated_at_ms       BIGINT NOT NULL,
    acknowledged_at_ms  BIGINT,
    acknowledged_by     TEXT,
    assignee            TEXT,
    resolved_at_ms      BIGINT,
    resolved_by         TEXT,
    resolution_note     TEXT,
    closed_at_ms        BIGINT
);
CREATE UNIQUE INDEX incidents_one_open ON incidents (fingerprint)
    WHERE state IN ('open', 'acknowledged');
CREATE INDEX incidents_fingerprint ON incidents (fingerprint, resolved_at_ms);
CREATE INDEX incidents_state ON incidents (state, level);
CREATE INDEX incidents_host ON incidents (host_id, state);
CREATE INDEX incidents_parent ON incidents (parent_id);

CREATE TABLE incident_timeline (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id  INTEGER NOT NULL REFERENCES incidents (id),
    at_ms        BIGINT NOT NULL,
    -- opened, level, summary, event, flapping, grouped, reopened, resolved, acknowledged,
    -- assigned, note, closed
    kind         TEXT NOT NULL,
    -- `vigil` for the collector itself, `token:<name>` for a person.
    actor        TEXT NOT NULL,
    detail       TEXT NOT NULL
);
CREATE INDEX incident_timeline_incident ON incident_timeline (incident_id, id);

-- Planned maintenance: findings inside a window are recorded but open nothing.
CREATE TABLE maintenance_windows (
    id             TEXT PRIMARY KEY,
    customer_id    TEXT NOT NULL REFERENCES customers (id),
    site_id        TEXT REFERENCES sites (id),
    host_id        TEXT REFERENCES hosts (id),
    -- JSON array of rule ids; empty = every rule.
    rules          TEXT NOT NULL,
    start_local    TEXT NOT NULL,
    duration_ms    BIGINT NOT NULL,
    recurrence     TEXT NOT NULL,
    time_zone      TEXT NOT NULL,
    until_local    TEXT,
    reason         TEXT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL
);
