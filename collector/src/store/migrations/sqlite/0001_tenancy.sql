-- Customers, sites and hosts: the tenancy model. A host belongs to exactly one site, a site to
-- exactly one customer. Host IDs are assigned by the collector.
CREATE TABLE customers (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE sites (
    id            TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (customer_id, name)
);

CREATE TABLE hosts (
    id               TEXT PRIMARY KEY,
    site_id          TEXT NOT NULL REFERENCES sites (id),
    -- Identity claim of the plaintext, loopback-only registration mode ("machine-id:<id>").
    -- NULL for hosts that enrolled with a certificate.
    registration_key TEXT UNIQUE,
    hostname         TEXT NOT NULL,
    created_at_ms    BIGINT NOT NULL,
    -- Receive time (collector clock) of the newest report, live or replayed.
    last_seen_ms     BIGINT,
    interval_seconds INTEGER NOT NULL DEFAULT 10,
    agent_version    TEXT NOT NULL DEFAULT '',
    goodbye_reason   TEXT,
    goodbye_at_ms    BIGINT
);
CREATE INDEX hosts_site ON hosts (site_id);
