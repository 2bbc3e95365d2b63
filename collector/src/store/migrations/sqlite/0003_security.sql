-- Enrolment, certificates, operator API tokens and the audit log.
-- Hosts now come into being by enrolment only; `registration_key` stays NULL for them.
ALTER TABLE hosts ADD COLUMN machine_id TEXT NOT NULL DEFAULT '';
-- Set when an admin revoked the host: its certificates stop working on every replica.
ALTER TABLE hosts ADD COLUMN revoked_at_ms BIGINT;
-- Set when a re-installed machine's new identity took over this host's history.
ALTER TABLE hosts ADD COLUMN replaced_by TEXT REFERENCES hosts (id);

-- One-time (or N-time) enrolment tokens, bound to a site. Only the SHA-256 of the secret is kept.
CREATE TABLE enrollment_tokens (
    id             TEXT PRIMARY KEY,
    secret_sha256  TEXT NOT NULL UNIQUE,
    site_id        TEXT NOT NULL REFERENCES sites (id),
    uses_left      INTEGER NOT NULL,
    expires_at_ms  BIGINT NOT NULL,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL
);

-- Every client certificate issued, by SHA-256 of its DER: how a presented certificate is
-- mapped to its host, and what a renewal must match (same key).
CREATE TABLE certificates (
    fingerprint    TEXT PRIMARY KEY,
    host_id        TEXT NOT NULL REFERENCES hosts (id),
    key_sha256     TEXT NOT NULL,
    not_before_ms  BIGINT NOT NULL,
    not_after_ms   BIGINT NOT NULL,
    issued_at_ms   BIGINT NOT NULL,
    -- 'enroll' or 'renew'
    reason         TEXT NOT NULL
);
CREATE INDEX certificates_host ON certificates (host_id);

-- Operator API bearer tokens. Only the SHA-256 of the secret is kept.
CREATE TABLE api_tokens (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL,
    -- 'viewer', 'operator' or 'admin'
    role           TEXT NOT NULL,
    -- When set, the token sees and acts on this customer's hosts only.
    customer_id    TEXT REFERENCES customers (id),
    secret_sha256  TEXT NOT NULL UNIQUE,
    created_at_ms  BIGINT NOT NULL,
    created_by     TEXT NOT NULL,
    revoked_at_ms  BIGINT
);

-- Every change made through the API: who, what, when, from where.
CREATE TABLE audit_log (
    id             INTEGER PRIMARY KEY,
    at_ms          BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    detail         TEXT NOT NULL,
    source         TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
