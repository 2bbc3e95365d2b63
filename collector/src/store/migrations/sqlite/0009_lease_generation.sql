-- The runner lease's generation: raised each time the lease changes hands, carried by the
-- holder's writes as their fence (see store::Fence).
ALTER TABLE leases ADD COLUMN generation BIGINT NOT NULL DEFAULT 1;
