-- The highest seq of each agent instance whose receipt retention has deleted: a replay at or
-- below it that has no receipt is older than the receipt window, not new. BIGINT like every
-- other seq column (a seq is a u64 kept as a signed 64-bit integer).
ALTER TABLE agent_instances ADD COLUMN pruned_through_seq BIGINT NOT NULL DEFAULT 0;
