-- Insights (docs/insights.md): the facts GET /insights counts, kept
-- in a rollup at three grains (UTC hours, days and months) so that a
-- window of any length reads whole months, then whole days, then whole
-- hours from the rollup, and only the raw facts of the (at most two)
-- partial hours at its ends.  Statement triggers append each statement's
-- facts to insights_pending (one plain INSERT: no upsert, no row lock
-- shared with another writer); a folder (insights_fold, run by the server
-- every half second) moves them into the rollup after commit, in batches.
-- Reads add the pending facts of their whole hours, so they stay exact.
--
-- A fact is (at, metric, workflow, dim, bucket, ms): one thing that
-- happened at `at`; bucket is the latency's histogram bucket (-1 for a
-- plain count), ms the latency itself.  The same three functions derive
-- the facts of a row for the triggers (what the rollup holds) and for the
-- raw reads (edges, exact percentiles), so both always agree.
--
-- Every entry point (trigger functions, insights_fold, insights_partial)
-- pins search_path to this schema (FROM CURRENT: the migration runs with
-- the tenant's schema first), so the triggers work under
-- platform.eng_apply's search_path and the platform can call
-- insights_partial of any client schema.  The fact functions and
-- insights_raw pin nothing: SQL functions without SET are inlined into
-- the entry points' queries (planned under their path), which is what
-- makes a raw read cost a scan rather than a function call per row.

-- Histogram buckets: 0 holds [0, 1) ms, bucket b >= 1 holds
-- [2^((b-1)/4), 2^(b/4)) ms: four per doubling, a value read back as its
-- bucket's geometric middle is within 9 % of the truth.
CREATE FUNCTION insights_bucket(ms float8) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN ms IS NULL THEN -1 WHEN ms < 1 THEN 0 ELSE floor(ln(ms) / ln(2.0) * 4)::int + 1 END;

-- The facts of a run: started (created_at), and once it ended, its
-- cycle time under its end state (finished_at).
CREATE FUNCTION insights_run_facts(r runs)
RETURNS TABLE (at timestamptz, metric text, workflow text, dim text, bucket int, ms float8)
LANGUAGE sql STABLE
AS $$
	SELECT m.at, m.metric, r.workflow, m.dim, m.bucket, m.ms
	FROM (SELECT extract(epoch FROM r.finished_at - r.created_at)::float8 * 1000 AS ms) x,
	LATERAL (VALUES
		(r.created_at, 'started', '', -1, NULL::float8, true),
		(r.finished_at, 'cycle', r.state, insights_bucket(x.ms), x.ms,
		 r.state IN ('succeeded', 'failed', 'cancelled') AND r.finished_at IS NOT NULL)) AS m(at, metric, dim, bucket, ms, yes)
	WHERE m.yes
$$;

-- The connector each http or ai step of each workflow version calls,
-- kept at write time (versions are immutable) so that a step's facts
-- find their connector by one index lookup, never by walking the
-- definition.  Not cascaded: a deleted workflow's runs keep their names.
CREATE TABLE insights_step_connectors (
	workflow  text NOT NULL,
	version   int NOT NULL,
	step      text NOT NULL,
	connector text NOT NULL,
	PRIMARY KEY (workflow, version, step)
);

CREATE FUNCTION insights_versions_ins() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	INSERT INTO insights_step_connectors AS c (workflow, version, step, connector)
	SELECT DISTINCT ON (nt.workflow, nt.version, d->>'id') nt.workflow, nt.version, d->>'id', d->>'connector'
	FROM nt, jsonb_array_elements(CASE WHEN jsonb_typeof(nt.definition->'steps') = 'array'
					   THEN nt.definition->'steps' ELSE '[]' END) d
	WHERE d->>'id' IS NOT NULL AND d->>'connector' IS NOT NULL
	ORDER BY nt.workflow, nt.version, d->>'id'
	ON CONFLICT (workflow, version, step) DO UPDATE SET connector = EXCLUDED.connector;
	RETURN NULL;
END $$;
CREATE TRIGGER insights_versions_ins AFTER INSERT ON workflow_versions REFERENCING NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_versions_ins();
CREATE TRIGGER insights_versions_upd AFTER UPDATE ON workflow_versions REFERENCING NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_versions_ins();
INSERT INTO insights_step_connectors (workflow, version, step, connector)
SELECT DISTINCT ON (v.workflow, v.version, d->>'id') v.workflow, v.version, d->>'id', d->>'connector'
FROM workflow_versions v, jsonb_array_elements(CASE WHEN jsonb_typeof(v.definition->'steps') = 'array'
						  THEN v.definition->'steps' ELSE '[]' END) d
WHERE d->>'id' IS NOT NULL AND d->>'connector' IS NOT NULL
ORDER BY v.workflow, v.version, d->>'id';

-- The facts of a timeline row, all dated by the attempt's start:
-- dead_letter (a failed row: the run was dead-lettered) by error code;
-- ai (an answer's governance outcome); call and call_error (a row with a
-- connector call summary) by connector name.
CREATE FUNCTION insights_step_facts(s run_steps)
RETURNS TABLE (at timestamptz, metric text, workflow text, dim text, bucket int, ms float8)
LANGUAGE sql STABLE
AS $$
	SELECT s.started_at, m.metric, r.workflow, m.dim, m.bucket, m.ms
	-- the run by its key, row by row (OFFSET 0: never a hash join over
	-- every run for a few hundred rows of an edge hour)
	FROM LATERAL (SELECT r.workflow, r.version FROM runs r WHERE r.id = s.run_id OFFSET 0) r,
	LATERAL (SELECT (s.summary->>'duration_ms')::float8 AS ms,
			CASE WHEN s.summary ? 'duration_ms'
			     THEN coalesce((SELECT sc.connector FROM insights_step_connectors sc
					    WHERE sc.workflow = r.workflow AND sc.version = r.version AND sc.step = s.step),
					   '(unknown)') END AS name) c,
	LATERAL (VALUES
		('dead_letter', coalesce(s.error->>'code', 'unknown'), -1, NULL::float8, s.state = 'failed'),
		('ai', s.output->>'outcome', -1, NULL,
		 s.type = 'ai' AND s.state = 'succeeded' AND s.output->>'outcome' IS NOT NULL),
		('call', c.name, insights_bucket(c.ms), c.ms, c.name IS NOT NULL),
		('call_error', c.name, -1, NULL,
		 c.name IS NOT NULL AND (s.error IS NOT NULL OR s.state IN ('failed', 'retrying')))) AS m(metric, dim, bucket, ms, yes)
	WHERE m.yes
$$;

-- The facts of a closed task (approved, rejected, expired), dated when it
-- closed: its decision, or for an expired task its due time.  Under the
-- role that held it last.
CREATE FUNCTION insights_task_facts(t tasks)
RETURNS TABLE (at timestamptz, metric text, workflow text, dim text, bucket int, ms float8)
LANGUAGE sql STABLE
AS $$
	SELECT k.at, m.metric, r.workflow, t.assignee_role, m.bucket, m.ms
	FROM LATERAL (SELECT r.workflow FROM runs r WHERE r.id = t.run_id OFFSET 0) r,
	LATERAL (SELECT coalesce(t.decided_at, t.due_at) AS at,
			t.state IN ('approved', 'rejected') AND t.decided_at > t.due_at AS late,
			t.state = 'expired' AS expired,
			CASE WHEN t.decided_at IS NOT NULL AND t.state IN ('approved', 'rejected')
			     THEN extract(epoch FROM t.decided_at - t.created_at)::float8 * 1000 END AS ms) k,
	LATERAL (VALUES
		('tasks_closed', -1, NULL::float8, true),
		('approval', insights_bucket(k.ms), k.ms, k.ms IS NOT NULL),
		('sla_late', -1, NULL, k.late),
		('sla_expired', -1, NULL, k.expired),
		('sla_escalated', -1, NULL, t.escalated),
		('sla_breached', -1, NULL, k.late OR k.expired OR t.escalated)) AS m(metric, bucket, ms, yes)
	WHERE t.state IN ('approved', 'rejected', 'expired') AND m.yes
$$;

-- The rollup: per UTC hour, day and month (grain; at is the period's
-- start), metric, workflow, dimension and bucket, a count.  Only the
-- folder writes it, one per schema at a time (insights_fold's lock).
CREATE TABLE insights_rollup (
	grain    text NOT NULL CHECK (grain IN ('hour', 'day', 'month')),
	at       timestamptz NOT NULL,
	metric   text NOT NULL,
	workflow text NOT NULL,
	dim      text NOT NULL,
	bucket   int NOT NULL,
	n        bigint NOT NULL,
	PRIMARY KEY (grain, at, metric, workflow, dim, bucket)
);

-- Facts written but not folded yet: what the triggers append (+1 for a
-- new row's fact, -1 for an old row's), at hour grain.  As cheap as an
-- insert gets: a bigserial key and no other index.
CREATE TABLE insights_pending (
	id       bigserial PRIMARY KEY,
	hour     timestamptz NOT NULL,
	metric   text NOT NULL,
	workflow text NOT NULL,
	dim      text NOT NULL,
	bucket   int NOT NULL,
	n        int NOT NULL
);

-- After a writer appended facts: makes sure platform.insights_due lists
-- this schema, so that a folder comes by.  The writer holds the schema's
-- write lock shared until it commits; a folder drops the schema from the
-- list only under that lock exclusive (no writer in flight) and only when
-- nothing is pending, so a writer that saw the schema listed cannot leave
-- facts nobody folds.  No unique key: two writers that both find the
-- schema missing add it twice rather than one waiting for the other.
CREATE FUNCTION insights_note_pending() RETURNS void
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	PERFORM pg_advisory_xact_lock_shared(hashtextextended('mspflow.insights.write:' || current_schema(), 0));
	-- a statement of its own: its snapshot is taken after the lock
	IF NOT EXISTS (SELECT 1 FROM platform.insights_due d WHERE d.schema_name = current_schema()) THEN
		INSERT INTO platform.insights_due (schema_name) VALUES (current_schema());
	END IF;
END $$;

-- Folds up to p_max pending facts (the oldest) into the rollup at each
-- grain, in the caller's transaction; returns how many.  The schema's fold
-- lock serialises folders: with p_wait false a folder that finds it taken
-- skips the schema (0), so several servers share the work.  Rollup rows
-- are upserted in key order.  A pass that leaves nothing pending takes
-- the schema off platform.insights_due when no writer is in flight.
CREATE FUNCTION insights_fold(p_max int, p_wait boolean DEFAULT false) RETURNS int
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
	lk bigint := hashtextextended('mspflow.insights.fold:' || current_schema(), 0);
	done int;
BEGIN
	IF p_wait THEN
		PERFORM pg_advisory_xact_lock(lk);
	ELSIF NOT pg_try_advisory_xact_lock(lk) THEN
		RETURN 0;
	END IF;
	WITH d AS (
		DELETE FROM insights_pending p
		WHERE p.id IN (SELECT q.id FROM insights_pending q ORDER BY q.id LIMIT p_max FOR UPDATE SKIP LOCKED)
		RETURNING p.hour, p.metric, p.workflow, p.dim, p.bucket, p.n),
	up AS (
		INSERT INTO insights_rollup AS r (grain, at, metric, workflow, dim, bucket, n)
		SELECT g.grain, CASE WHEN g.grain = 'hour' THEN d.hour
				     ELSE date_trunc(g.grain, d.hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' END,
		       d.metric, d.workflow, d.dim, d.bucket, sum(d.n)
		FROM d, (VALUES ('hour'), ('day'), ('month')) AS g(grain)
		GROUP BY 1, 2, 3, 4, 5, 6
		HAVING sum(d.n) <> 0
		ORDER BY 1, 2, 3, 4, 5, 6
		ON CONFLICT (grain, at, metric, workflow, dim, bucket) DO UPDATE SET n = r.n + EXCLUDED.n)
	SELECT count(*) INTO done FROM d;
	IF done < p_max AND pg_try_advisory_xact_lock(hashtextextended('mspflow.insights.write:' || current_schema(), 0)) THEN
		-- no writer in flight; a statement of its own, so that its
		-- snapshot holds every writer's commit
		IF NOT EXISTS (SELECT 1 FROM insights_pending) THEN
			DELETE FROM platform.insights_due d WHERE d.schema_name = current_schema();
		END IF;
	END IF;
	RETURN done;
END $$;

-- The trigger functions: facts of the new rows minus those of the old,
-- appended to insights_pending in one INSERT per statement.
CREATE FUNCTION insights_runs_ins() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
		FROM nt, insights_run_facts(nt) f WHERE f.at IS NOT NULL;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION insights_runs_upd() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	-- only the rows whose end changed (most updates move a run between steps)
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, f.n
		FROM (SELECT x.*, 1 AS n FROM nt JOIN ot ON ot.id = nt.id, insights_run_facts(nt) x
		      WHERE (ot.state, ot.finished_at, ot.created_at, ot.workflow)
			    IS DISTINCT FROM (nt.state, nt.finished_at, nt.created_at, nt.workflow)
		      UNION ALL
		      SELECT x.*, -1 FROM ot JOIN nt ON ot.id = nt.id, insights_run_facts(ot) x
		      WHERE (ot.state, ot.finished_at, ot.created_at, ot.workflow)
			    IS DISTINCT FROM (nt.state, nt.finished_at, nt.created_at, nt.workflow)) f
		WHERE f.at IS NOT NULL;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION insights_steps_ins() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
		FROM nt, insights_step_facts(nt) f
		WHERE (nt.summary IS NOT NULL OR nt.state = 'failed' OR nt.type = 'ai') AND f.at IS NOT NULL;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION insights_steps_upd() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	-- an update that moves no fact (most do not) appends nothing
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, sum(f.n)
		FROM (SELECT x.*, 1 AS n FROM nt, insights_step_facts(nt) x
		      WHERE nt.summary IS NOT NULL OR nt.state = 'failed' OR nt.type = 'ai'
		      UNION ALL
		      SELECT x.*, -1 FROM ot, insights_step_facts(ot) x
		      WHERE ot.summary IS NOT NULL OR ot.state = 'failed' OR ot.type = 'ai') f
		WHERE f.at IS NOT NULL
		GROUP BY 1, 2, 3, 4, 5
		HAVING sum(f.n) <> 0;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION insights_tasks_ins() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
		FROM nt, insights_task_facts(nt) f WHERE nt.state <> 'open' AND f.at IS NOT NULL;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE FUNCTION insights_tasks_upd() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
	-- an update that moves no fact (most do not) appends nothing
	INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
	SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, sum(f.n)
		FROM (SELECT x.*, 1 AS n FROM nt, insights_task_facts(nt) x WHERE nt.state <> 'open'
		      UNION ALL
		      SELECT x.*, -1 FROM ot, insights_task_facts(ot) x WHERE ot.state <> 'open') f
		WHERE f.at IS NOT NULL
		GROUP BY 1, 2, 3, 4, 5
		HAVING sum(f.n) <> 0;
	IF FOUND THEN
		PERFORM insights_note_pending();
	END IF;
	RETURN NULL;
END $$;

CREATE TRIGGER insights_runs_ins AFTER INSERT ON runs REFERENCING NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_runs_ins();
CREATE TRIGGER insights_runs_upd AFTER UPDATE ON runs REFERENCING OLD TABLE AS ot NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_runs_upd();
CREATE TRIGGER insights_steps_ins AFTER INSERT ON run_steps REFERENCING NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_steps_ins();
CREATE TRIGGER insights_steps_upd AFTER UPDATE ON run_steps REFERENCING OLD TABLE AS ot NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_steps_upd();
CREATE TRIGGER insights_tasks_ins AFTER INSERT ON tasks REFERENCING NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_tasks_ins();
CREATE TRIGGER insights_tasks_upd AFTER UPDATE ON tasks REFERENCING OLD TABLE AS ot NEW TABLE AS nt
	FOR EACH STATEMENT EXECUTE FUNCTION insights_tasks_upd();

-- An AI review's final row replaces its waiting row (same seq) without a
-- call summary: keep the call's, so the call stays a fact and in the
-- timeline.
CREATE FUNCTION insights_keep_summary() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.summary := OLD.summary;
	RETURN NEW;
END $$;
CREATE TRIGGER insights_keep_summary BEFORE UPDATE ON run_steps
	FOR EACH ROW WHEN (NEW.summary IS NULL AND OLD.summary IS NOT NULL) EXECUTE FUNCTION insights_keep_summary();

-- Indexes for the raw reads: the edge days and exact percentiles.
CREATE INDEX runs_created_idx ON runs (created_at);
CREATE INDEX runs_finished_idx ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX run_steps_insights_idx ON run_steps (started_at)
	WHERE summary IS NOT NULL OR state = 'failed' OR type = 'ai';
CREATE INDEX tasks_closed_idx ON tasks ((coalesce(decided_at, due_at))) WHERE state IN ('approved', 'rejected', 'expired');

-- The raw facts of [p_from, p_to) (p_wf NULL: every workflow) from the
-- sources p_src names: 'all', or one distribution's ('cycle', 'approval',
-- 'call'); the other branches stop at a one-time filter.
CREATE FUNCTION insights_raw(p_from timestamptz, p_to timestamptz, p_wf text, p_src text)
RETURNS TABLE (metric text, dim text, bucket int, ms float8)
LANGUAGE sql STABLE
AS $$
	SELECT f.metric, f.dim, f.bucket, f.ms FROM runs r, insights_run_facts(r) f
	WHERE p_src = 'all' AND r.created_at >= p_from AND r.created_at < p_to AND f.metric = 'started'
	  AND (p_wf IS NULL OR r.workflow = p_wf)
	UNION ALL
	SELECT f.metric, f.dim, f.bucket, f.ms FROM runs r, insights_run_facts(r) f
	WHERE p_src IN ('all', 'cycle') AND r.finished_at >= p_from AND r.finished_at < p_to AND f.metric = 'cycle'
	  AND (p_wf IS NULL OR r.workflow = p_wf)
	UNION ALL
	SELECT f.metric, f.dim, f.bucket, f.ms FROM run_steps s, insights_step_facts(s) f
	WHERE p_src IN ('all', 'call') AND s.started_at >= p_from AND s.started_at < p_to
	  AND (s.summary IS NOT NULL OR s.state = 'failed' OR s.type = 'ai')
	  AND (p_src = 'all' OR s.summary IS NOT NULL)
	  AND (p_wf IS NULL OR f.workflow = p_wf)
	UNION ALL
	SELECT f.metric, f.dim, f.bucket, f.ms FROM tasks t, insights_task_facts(t) f
	WHERE p_src IN ('all', 'approval')
	  AND coalesce(t.decided_at, t.due_at) >= p_from AND coalesce(t.decided_at, t.due_at) < p_to
	  AND t.state IN ('approved', 'rejected', 'expired')
	  AND (p_wf IS NULL OR f.workflow = p_wf)
$$;

-- How [p_from, p_to) is read: whole UTC months, days and hours from the
-- rollup (grain 'month', 'day', 'hour'), the partial hours at its ends
-- (grain 'raw', at most two spans) from the raw facts.  Largest grain in
-- the middle: a year reads about 11 months, 60 days, 46 hours and two
-- partial hours.
CREATE FUNCTION insights_spans(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (grain text, lo timestamptz, hi timestamptz)
LANGUAGE plpgsql IMMUTABLE ROWS 8
AS $$
DECLARE
	f timestamp := p_from AT TIME ZONE 'UTC';
	t timestamp := p_to AT TIME ZONE 'UTC';
	lo1 timestamp := f;		-- what is left to read, whole at grain g
	hi1 timestamp := t;
	g text := 'raw';
	lo2 timestamp;
	hi2 timestamp;
	u text;
BEGIN
	FOREACH u IN ARRAY ARRAY['hour', 'day', 'month'] LOOP
		-- the whole u periods inside the window; g covers the rest
		lo2 := date_trunc(u, f);
		IF lo2 < f THEN
			lo2 := lo2 + ('1 ' || u)::interval;
		END IF;
		hi2 := date_trunc(u, t);
		EXIT WHEN lo2 >= hi2;
		grain := g;
		IF lo1 < lo2 THEN
			lo := lo1 AT TIME ZONE 'UTC';
			hi := lo2 AT TIME ZONE 'UTC';
			RETURN NEXT;
		END IF;
		IF hi2 < hi1 THEN
			lo := hi2 AT TIME ZONE 'UTC';
			hi := hi1 AT TIME ZONE 'UTC';
			RETURN NEXT;
		END IF;
		lo1 := lo2;
		hi1 := hi2;
		g := u;
	END LOOP;
	grain := g;
	lo := lo1 AT TIME ZONE 'UTC';
	hi := hi1 AT TIME ZONE 'UTC';
	RETURN NEXT;
END $$;

-- What GET /insights needs of this schema for [p_from, p_to): counts per
-- "metric|dim", and per distribution (cycle, approval, call) its
-- histogram {"bucket": n} and, while it holds at most p_exact values,
-- the values themselves (sorted) for exact percentiles.
-- jit off: the plan's estimates (parameters unknown when it is made)
-- pass the JIT threshold, and compiling costs ~100 ms for a read of a few
-- ms.
CREATE FUNCTION insights_partial(p_from timestamptz, p_to timestamptz, p_wf text, p_exact int)
RETURNS jsonb
LANGUAGE sql STABLE SET search_path FROM CURRENT SET jit = off
AS $$
	WITH s AS MATERIALIZED (SELECT * FROM insights_spans(p_from, p_to)),
	cells AS (
		SELECT u.metric, u.dim, u.bucket, sum(u.n) AS n FROM (
			-- one index range scan per span (OFFSET 0 keeps the subquery
			-- whole: joined flat, the planner would scan the rollup)
			SELECT d.metric, d.dim, d.bucket, d.n FROM s CROSS JOIN LATERAL (
				SELECT d.metric, d.dim, d.bucket, d.n FROM insights_rollup d
				WHERE d.grain = s.grain AND d.at >= s.lo AND d.at < s.hi
				  AND (p_wf IS NULL OR d.workflow = p_wf) OFFSET 0) d
			WHERE s.grain <> 'raw'
			UNION ALL
			SELECT x.metric, x.dim, x.bucket, 1 FROM s, insights_raw(s.lo, s.hi, p_wf, 'all') x
			WHERE s.grain = 'raw'
			UNION ALL
			-- facts not folded yet, of the window's whole hours (those
			-- of the partial hours are in the raw read already); read
			-- in this statement's snapshot with the rollup, so a fold
			-- committing meanwhile is seen whole or not at all
			SELECT p.metric, p.dim, p.bucket, p.n FROM insights_pending p
			WHERE p.hour >= p_from AND p.hour + interval '1 hour' <= p_to
			  AND (p_wf IS NULL OR p.workflow = p_wf)) u
		GROUP BY 1, 2, 3
		HAVING sum(u.n) <> 0),
	counts AS (
		SELECT coalesce(jsonb_object_agg(k, n), '{}') AS j
		FROM (SELECT metric || '|' || dim AS k, sum(n) AS n FROM cells GROUP BY 1) c),
	-- the values of a metric's distributions, read only when all its dims
	-- hold at most p_exact together: the raw read visits about that many rows
	small AS (
		SELECT metric FROM cells WHERE bucket >= 0 GROUP BY 1 HAVING sum(n) <= p_exact),
	vals AS (
		SELECT x.metric, x.dim, jsonb_agg(x.ms ORDER BY x.ms) AS v
		FROM (SELECT * FROM insights_raw(p_from, p_to, p_wf, 'cycle')
		      WHERE EXISTS (SELECT 1 FROM small WHERE metric = 'cycle')
		      UNION ALL
		      SELECT * FROM insights_raw(p_from, p_to, p_wf, 'approval')
		      WHERE EXISTS (SELECT 1 FROM small WHERE metric = 'approval')
		      UNION ALL
		      SELECT * FROM insights_raw(p_from, p_to, p_wf, 'call')
		      WHERE EXISTS (SELECT 1 FROM small WHERE metric = 'call')) x
		WHERE x.metric IN (SELECT metric FROM small) AND x.ms IS NOT NULL
		GROUP BY 1, 2),
	dists AS (
		SELECT coalesce(jsonb_object_agg(h.metric || '|' || h.dim,
			jsonb_build_object('n', h.n, 'hist', h.hist, 'values',
				CASE WHEN h.metric IN (SELECT metric FROM small) THEN coalesce(vals.v, '[]') END)), '{}') AS j
		FROM (SELECT metric, dim, sum(n) AS n, jsonb_object_agg(bucket::text, n) AS hist
		      FROM cells WHERE bucket >= 0 GROUP BY 1, 2) h
		LEFT JOIN vals ON vals.metric = h.metric AND vals.dim = h.dim)
	SELECT jsonb_build_object('counts', counts.j, 'dists', dists.j) FROM counts, dists
$$;

-- The facts already stored when this migration runs (one statement per
-- table: the fact functions inline into each), folded at once.
INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
FROM runs r, insights_run_facts(r) f WHERE f.at IS NOT NULL;
INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
FROM run_steps s, insights_step_facts(s) f
WHERE (s.summary IS NOT NULL OR s.state = 'failed' OR s.type = 'ai') AND f.at IS NOT NULL;
INSERT INTO insights_pending (hour, metric, workflow, dim, bucket, n)
SELECT date_bin('1 hour', f.at, '2000-01-01T00:00:00Z'), f.metric, f.workflow, f.dim, f.bucket, 1
FROM tasks t, insights_task_facts(t) f WHERE t.state <> 'open' AND f.at IS NOT NULL;
SELECT insights_fold(2147483647, true)
