-- Cluster-wide rate-limit windows (gateway/ratelimit.c): one row per key,
-- window length and window, counting the budget leased to gateway workers.
-- UNLOGGED: counters need no durability; after a crash they restart at zero,
-- which forgives at most one window.  fillfactor leaves room on each page so
-- the frequent lease updates (of non-indexed columns) stay HOT.
CREATE UNLOGGED TABLE rate_windows (
	key          text   NOT NULL,
	window_s     int    NOT NULL CHECK (window_s BETWEEN 1 AND 3600),
	window_start bigint NOT NULL,	-- unix seconds, a multiple of window_s
	used         bigint NOT NULL,	-- units granted so far in this window
	last_grant   bigint NOT NULL,	-- what the latest lease granted (for RETURNING)
	PRIMARY KEY (key, window_s, window_start)
) WITH (fillfactor = 70);

-- the periodic cleanup deletes windows that ended an hour ago by start time
CREATE INDEX rate_windows_start_idx ON rate_windows (window_start);
