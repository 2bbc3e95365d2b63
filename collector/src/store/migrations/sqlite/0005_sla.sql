-- Contracts, SLA clocks and escalation, the single-runner lease, and the notification outbox.

-- One contract per customer, as JSON owned by `crate::sla::contract` (validated before it is
-- written). A customer without a row has the default contract.
CREATE TABLE contracts (
    customer_id    TEXT PRIMARY KEY REFERENCES customers (id),
    body           TEXT NOT NULL,
    updated_at_ms  BIGINT NOT NULL,
    updated_by     TEXT NOT NULL
);

-- SLA state of each incident. Deadlines are computed by the SLA sweep from the opening time,
-- the level and the contract's calendar; `sla_check_at_ms` is when the sweep must look at the
-- incident next (NULL: recompute now, e.g. after a level change, an acknowledgement or a new
-- maintenance window). `*_met`: NULL while pending, then TRUE (met) or FALSE (missed).
ALTER TABLE incidents ADD COLUMN tier INTEGER NOT NULL DEFAULT 1;
-- When the clocks started: the opening, or the latest reopening (NULL: opened_at_ms).
ALTER TABLE incidents ADD COLUMN sla_start_ms BIGINT;
ALTER TABLE incidents ADD COLUMN sla_level INTEGER;
ALTER TABLE incidents ADD COLUMN response_due_ms BIGINT;
ALTER TABLE incidents ADD COLUMN resolution_due_ms BIGINT;
ALTER TABLE incidents ADD COLUMN response_met BOOLEAN;
ALTER TABLE incidents ADD COLUMN resolution_met BOOLEAN;
ALTER TABLE incidents ADD COLUMN response_warned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE incidents ADD COLUMN resolution_warned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE incidents ADD COLUMN sla_check_at_ms BIGINT;
ALTER TABLE incidents ADD COLUMN sla_done BOOLEAN NOT NULL DEFAULT FALSE;
CREATE INDEX incidents_sla_check ON incidents (sla_done, sla_check_at_ms);

-- Work that exactly one collector does at a time (the SLA sweep, notification delivery): the
-- holder renews its lease; another replica takes over once it has expired.
CREATE TABLE leases (
    name           TEXT PRIMARY KEY,
    holder         TEXT NOT NULL,
    expires_at_ms  BIGINT NOT NULL
);

-- Notifiable incident changes, written in the same transaction as the change itself, so a
-- crash never loses one. The notifier fans each out to the receivers of the incident's tier
-- (one `deliveries` row each, with the payload as it was), then delivers with retry.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id     INTEGER NOT NULL REFERENCES incidents (id),
    timeline_id     INTEGER NOT NULL REFERENCES incident_timeline (id),
    created_at_ms   BIGINT NOT NULL,
    fanned_out      BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX outbox_pending ON outbox (fanned_out, id);

CREATE TABLE deliveries (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    outbox_id           INTEGER NOT NULL REFERENCES outbox (id),
    incident_id         INTEGER NOT NULL REFERENCES incidents (id),
    -- Stable across retries and replicas: INC-000042/<timeline id>.
    event_id            TEXT NOT NULL,
    receiver            TEXT NOT NULL,
    -- The Notification as JSON, as it was when fanned out.
    payload             TEXT NOT NULL,
    -- pending | delivered | failed
    state               TEXT NOT NULL,
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at_ms  BIGINT NOT NULL,
    last_error          TEXT,
    delivered_at_ms     BIGINT,
    UNIQUE (outbox_id, receiver)
);
CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at_ms);
CREATE INDEX deliveries_incident ON deliveries (incident_id, id);
