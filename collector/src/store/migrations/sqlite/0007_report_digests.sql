-- The SHA-256 of each report (encoded with `replayed` cleared), kept with its receipt: a resent
-- seq whose content differs is a reused seq (a restored agent state), not a duplicate.
-- Receipts from before this migration have none and are compared by seq alone.
ALTER TABLE report_receipts ADD COLUMN digest BLOB;
