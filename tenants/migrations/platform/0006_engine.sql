-- The engine's one platform-level table: which run needs a worker and
-- when.  A row exists while a run has work to do now (due_at <= now()), a
-- timer (due_at later), or a worker holding it (owner set; due_at is then
-- the end of the lease, so an expired lease is simply due again).  Runs
-- that wait for a person or an event without a deadline have no row.
-- Everything else about a run lives in its tenant's schema; nothing here
-- references another table, so tenants' schemas can live on other nodes.
CREATE TABLE run_queue (
	run_id      uuid PRIMARY KEY,
	tenant_id   uuid NOT NULL,
	schema_name text NOT NULL,
	due_at      timestamptz NOT NULL,
	owner       uuid NULL,			-- the worker holding the lease
	wake        boolean NOT NULL DEFAULT false,	-- woken while leased: look again on release
	claims      int NOT NULL DEFAULT 0
);
CREATE INDEX run_queue_tenant_due_idx ON run_queue (tenant_id, due_at);
CREATE INDEX run_queue_owner_idx ON run_queue (owner) WHERE owner IS NOT NULL;

-- One row per tenant that ever had engine work: when its next item is due
-- (a hint kept by enqueue and claim, repaired by eng_sweep), when a claim
-- last served it (claims go round-robin over tenants, oldest served
-- first) and its concurrent-run limit (policy engine.max_concurrent_runs).
CREATE TABLE engine_tenants (
	tenant_id   uuid PRIMARY KEY,
	next_due    timestamptz NOT NULL,
	served_at   timestamptz NOT NULL DEFAULT '-infinity',
	max_running int NOT NULL DEFAULT 20
);
CREATE INDEX engine_tenants_due_idx ON engine_tenants (next_due, served_at);

-- Makes runs due at p_due (now when NULL).  A run a worker holds is marked
-- to be looked at again when the worker lets it go.  Due-now work is
-- announced on channel mspflow_engine (delivered at commit).
CREATE FUNCTION eng_enqueue(p_tenant uuid, p_schema text, p_runs uuid[], p_due timestamptz)
RETURNS void LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	due timestamptz := coalesce(p_due, now());
BEGIN
	IF cardinality(p_runs) = 0 THEN
		RETURN;
	END IF;
	INSERT INTO run_queue AS q (run_id, tenant_id, schema_name, due_at)
	SELECT r, p_tenant, p_schema, due FROM unnest(p_runs) AS r
	ON CONFLICT (run_id) DO UPDATE
		SET due_at = CASE WHEN q.owner IS NULL THEN least(q.due_at, EXCLUDED.due_at) ELSE q.due_at END,
		    wake = q.owner IS NOT NULL;
	INSERT INTO engine_tenants AS e (tenant_id, next_due) VALUES (p_tenant, due)
	ON CONFLICT (tenant_id) DO UPDATE SET next_due = EXCLUDED.next_due WHERE e.next_due > EXCLUDED.next_due;
	IF due <= now() THEN
		PERFORM pg_notify('mspflow_engine', '');
	END IF;
END $$;

-- Claims up to p_batch due runs for worker p_owner, leased for p_lease_ms.
-- Tenants are served round-robin (least recently served first), each at
-- most up to its concurrent-run limit minus the runs it has leased now;
-- suspended or deleted tenants (or children of suspended ones) are
-- skipped, so their runs pause.  SKIP LOCKED everywhere: concurrent
-- claimers take different tenants and different runs.
CREATE FUNCTION eng_claim(p_owner uuid, p_lease_ms int, p_batch int)
RETURNS TABLE (run_id uuid, tenant_id uuid, schema_name text, claims int)
LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	t record;
	running int;
	n int;
	got int;
	left_ int := p_batch;
	lease timestamptz := now() + p_lease_ms * interval '1 millisecond';
BEGIN
	FOR t IN
		SELECT e.tenant_id AS id, e.max_running
		FROM engine_tenants e
		JOIN tenants tt ON tt.id = e.tenant_id
		LEFT JOIN tenants p ON p.id = tt.parent_id
		WHERE e.next_due <= now() AND tt.status = 'active' AND tt.deleted_at IS NULL
		  AND coalesce(p.status, 'active') = 'active'
		ORDER BY e.served_at
		LIMIT 64
		FOR UPDATE OF e SKIP LOCKED
	LOOP
		EXIT WHEN left_ <= 0;
		SELECT count(*) INTO running FROM run_queue q
		WHERE q.tenant_id = t.id AND q.owner IS NOT NULL AND q.due_at > now();
		n := least(left_, t.max_running - running);
		IF n > 0 THEN
			RETURN QUERY
			WITH picked AS (
				SELECT q.run_id FROM run_queue q
				WHERE q.tenant_id = t.id AND q.due_at <= now()
				ORDER BY q.due_at LIMIT n
				FOR UPDATE SKIP LOCKED)
			UPDATE run_queue q SET owner = p_owner, due_at = lease, wake = false, claims = q.claims + 1
			FROM picked WHERE q.run_id = picked.run_id
			RETURNING q.run_id, q.tenant_id, q.schema_name, q.claims;
			GET DIAGNOSTICS got = ROW_COUNT;
			left_ := left_ - got;
		END IF;
		UPDATE engine_tenants e SET served_at = clock_timestamp(),
			next_due = coalesce((SELECT min(q.due_at) FROM run_queue q WHERE q.tenant_id = t.id), 'infinity')
		WHERE e.tenant_id = t.id;
	END LOOP;
END $$;

-- Extends every lease worker p_owner holds.
CREATE FUNCTION eng_renew(p_owner uuid, p_lease_ms int)
RETURNS int LANGUAGE sql
SET search_path = platform AS $$
	WITH u AS (UPDATE run_queue SET due_at = now() + p_lease_ms * interval '1 millisecond'
		   WHERE owner = p_owner RETURNING 1)
	SELECT count(*)::int FROM u
$$;

-- Repairs the next_due hints (a wake-up that raced a claim) and refreshes
-- each tenant's concurrent-run limit: the smallest
-- engine.max_concurrent_runs set along the tenant's chain, else 20.
CREATE FUNCTION eng_sweep()
RETURNS void LANGUAGE sql
SET search_path = platform AS $$
	UPDATE engine_tenants e SET next_due = m.due
	FROM (SELECT q.tenant_id, min(q.due_at) AS due FROM run_queue q GROUP BY q.tenant_id) m
	WHERE e.tenant_id = m.tenant_id AND e.next_due > m.due;
	UPDATE engine_tenants e SET max_running = x.lim
	FROM (SELECT t.id, coalesce(least(
			(t.policy #>> '{engine,max_concurrent_runs}')::int,
			(p.policy #>> '{engine,max_concurrent_runs}')::int,
			(g.policy #>> '{engine,max_concurrent_runs}')::int), 20) AS lim
	      FROM tenants t
	      LEFT JOIN tenants p ON p.id = t.parent_id
	      LEFT JOIN tenants g ON g.id = p.parent_id) x
	WHERE e.tenant_id = x.id AND e.max_running <> x.lim;
$$;

-- Admission: may p_n more runs start for the tenant?  Its unfinished runs
-- (pending, running, waiting) must stay within engine.max_queued_runs of
-- its policy, the smallest along its chain (10,000 when none sets it).
-- Concurrent admissions may overshoot by what they start together.  A
-- request repeating an idempotency key already used is admitted: it
-- starts nothing and is answered the first outcome.
CREATE FUNCTION eng_admit(p_tenant uuid, p_schema text, p_n int, p_key text)
RETURNS boolean LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	lim int;
	used bigint;
	seen boolean;
BEGIN
	IF p_n <= 0 THEN
		RETURN true;
	END IF;
	IF p_key IS NOT NULL THEN
		EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.events WHERE idempotency_key = $1)', p_schema)
			INTO seen USING p_key;
		IF seen THEN
			RETURN true;
		END IF;
	END IF;
	SELECT coalesce(least((t.policy #>> '{engine,max_queued_runs}')::int,
			      (p.policy #>> '{engine,max_queued_runs}')::int,
			      (g.policy #>> '{engine,max_queued_runs}')::int), 10000)
	INTO lim
	FROM tenants t LEFT JOIN tenants p ON p.id = t.parent_id LEFT JOIN tenants g ON g.id = p.parent_id
	WHERE t.id = p_tenant;
	EXECUTE format('SELECT count(*) FROM (SELECT 1 FROM %I.runs '
		       'WHERE state IN (''pending'', ''running'', ''waiting'') LIMIT $1) x', p_schema)
		INTO used USING coalesce(lim, 10000) + 1;
	RETURN used + p_n <= coalesce(lim, 10000);
END $$;

-- Creates runs in a tenant's schema, pending and due now.  p_runs:
-- [{"id", "workflow", "version", "step", "ctx", "event_id"?}], built by
-- the engine (engine/start.c) from validated definitions.
CREATE FUNCTION eng_start(p_tenant uuid, p_schema text, p_actor text, p_runs jsonb)
RETURNS void LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	ids uuid[];
BEGIN
	IF jsonb_array_length(p_runs) = 0 THEN
		RETURN;
	END IF;
	EXECUTE format(
		'INSERT INTO %I.runs (id, workflow, version, state, step, ctx, event_id, created_by) '
		'SELECT x.id, x.workflow, x.version, ''pending'', x.step, x.ctx, x.event_id, $2 '
		'FROM jsonb_to_recordset($1) AS x(id uuid, workflow text, version int, step text, ctx jsonb, event_id uuid)',
		p_schema) USING p_runs, p_actor;
	SELECT array_agg((x->>'id')::uuid) INTO ids FROM jsonb_array_elements(p_runs) AS x;
	INSERT INTO audit_events (tenant_id, actor, action, target, detail)
	SELECT p_tenant, p_actor, 'run.created', 'run:' || (x->>'id'),
	       jsonb_build_object('workflow', x->'workflow', 'version', x->'version', 'event_id', x->'event_id')
	FROM jsonb_array_elements(p_runs) AS x;
	PERFORM eng_enqueue(p_tenant, p_schema, ids, NULL);
END $$;

-- Accepts an event: stores it, starts the runs the engine matched to it
-- (p_runs, as eng_start takes them) and wakes the runs waiting for its
-- type.  p_event: {"id", "type", "data", "source", "idempotency_key"?,
-- "request_hash"?}.  With an idempotency key already used nothing is
-- written and the first outcome is answered with "replay": true and its
-- request_hash, so the caller can tell a replay from a key reused for
-- another body.  Returns {"event_id", "run_ids", "replay"}.
CREATE FUNCTION eng_event(p_tenant uuid, p_schema text, p_actor text, p_event jsonb, p_runs jsonb)
RETURNS jsonb LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	got uuid;
	prior record;
	ids uuid[];
	waiting uuid[];
BEGIN
	SELECT coalesce(array_agg((x->>'id')::uuid), '{}') INTO ids FROM jsonb_array_elements(coalesce(p_runs, '[]')) AS x;
	EXECUTE format(
		'INSERT INTO %I.events (id, type, data, source, idempotency_key, request_hash, run_ids) '
		'VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id', p_schema)
		INTO got
		USING (p_event->>'id')::uuid, p_event->>'type', coalesce(p_event->'data', '{}'), p_event->>'source',
		      p_event->>'idempotency_key', p_event->>'request_hash', ids;
	IF got IS NULL THEN
		EXECUTE format('SELECT id, run_ids, request_hash FROM %I.events WHERE idempotency_key = $1', p_schema)
			INTO prior USING p_event->>'idempotency_key';
		RETURN jsonb_build_object('event_id', prior.id, 'run_ids', to_jsonb(prior.run_ids),
					  'replay', true, 'request_hash', prior.request_hash);
	END IF;
	PERFORM eng_start(p_tenant, p_schema, p_actor, coalesce(p_runs, '[]'));
	EXECUTE format('SELECT coalesce(array_agg(id), ''{}'') FROM %I.runs WHERE wait_event = $1 AND state = ''waiting''',
		       p_schema) INTO waiting USING p_event->>'type';
	PERFORM eng_enqueue(p_tenant, p_schema, waiting, NULL);
	RETURN jsonb_build_object('event_id', got, 'run_ids', to_jsonb(ids), 'replay', false);
END $$;

-- What a worker needs to advance claimed runs: each run's row, its
-- version's definition, and what it waits for (its task, or the events of
-- the awaited type received since it started waiting, oldest first).
CREATE FUNCTION eng_load(p_schema text, p_runs uuid[])
RETURNS TABLE (id uuid, workflow text, version int, state text, step text, attempt int, ctx text,
	       wait text, definition text, task text, events text, seq int)
LANGUAGE plpgsql STABLE
SET search_path = platform AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT r.id, r.workflow, r.version, r.state, r.step, r.attempt, r.ctx::text, r.wait::text, '
		'v.definition::text, '
		'(SELECT row_to_json(t)::text FROM %1$I.tasks t WHERE t.id = (r.wait->>''task'')::uuid), '
		'(SELECT json_agg(e ORDER BY e.received_at, e.seq)::text FROM (SELECT e.id, e.seq, e.type, e.data, e.received_at '
		'  FROM %1$I.events e WHERE r.wait_event IS NOT NULL AND e.type = r.wait_event '
		'  AND e.received_at >= (r.wait->>''since'')::timestamptz ORDER BY e.received_at, e.seq LIMIT 100) e), '
		'(SELECT coalesce(max(s.seq), 0) FROM %1$I.run_steps s WHERE s.run_id = r.id) '
		'FROM %1$I.runs r JOIN %1$I.workflow_versions v ON v.workflow = r.workflow AND v.version = r.version '
		'WHERE r.id = ANY($1)', p_schema) USING p_runs;
END $$;

-- Writes what a worker decided for its runs, each only while the worker
-- still holds the run's lease (else it is skipped: the lease expired and
-- another worker owns the run now) and the run was not cancelled
-- meanwhile.  p_changes: [{"run", "state", "step", "attempt", "ctx",
-- "wait", "wait_event", "error", "steps": [timeline rows], "task": new
-- task, "task_update", "events": [{"event", "runs"}], "audit": [{"action",
-- "detail"}], "keep": the worker goes on with the run (lease kept),
-- "due": when to look again (null: no timer)}].  Returns the ids applied.
--
-- Set-based: a handful of statements for the whole batch, whatever its
-- size, so a step costs a fraction of a commit.  Only emitted events go
-- one by one (eng_event: idempotency, triggers, wake-ups).
CREATE FUNCTION eng_apply(p_tenant uuid, p_schema text, p_owner uuid, p_changes jsonb)
RETURNS uuid[] LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	held uuid[];		-- leases still ours, locked
	woken uuid[];		-- of those, woken while held
	stale uuid[];		-- a task the pass expired or escalated was decided meanwhile
	written uuid[];		-- runs written (not cancelled)
	ch jsonb;
	e record;
	first_due timestamptz;
BEGIN
	WITH l AS (
		SELECT q.run_id, q.wake FROM run_queue q
		WHERE q.run_id IN (SELECT (x->>'run')::uuid FROM jsonb_array_elements(p_changes) AS x)
		  AND q.owner = p_owner
		FOR UPDATE)
	SELECT coalesce(array_agg(run_id), '{}'), coalesce(array_agg(run_id) FILTER (WHERE wake), '{}')
	INTO held, woken FROM l;
	IF cardinality(held) = 0 THEN
		RETURN held;
	END IF;

	-- A task the worker escalates or expires must still be open: a
	-- decision (or a cancel) that came in meanwhile wins, and the worker's
	-- view of that run is stale.  Nothing of its pass is kept; it is
	-- looked at again from what is committed.
	EXECUTE format(
		'WITH u AS (SELECT (x->>''run'')::uuid AS run, x->''task_update'' AS t '
		'           FROM jsonb_array_elements($1) AS x '
		'           WHERE jsonb_typeof(x->''task_update'') = ''object'' AND (x->>''run'')::uuid = ANY($2)), '
		'd AS (UPDATE %I.tasks k SET state = coalesce(u.t->>''state'', k.state), '
		'             assignee_role = coalesce(u.t->>''assignee_role'', k.assignee_role), '
		'             escalated = k.escalated OR coalesce((u.t->>''escalated'')::boolean, false), '
		'             due_at = coalesce((u.t->>''due_at'')::timestamptz, k.due_at) '
		'      FROM u WHERE k.id = (u.t->>''id'')::uuid AND k.state = ''open'' RETURNING u.run) '
		'SELECT coalesce(array_agg(u.run), ''{}'') FROM u WHERE u.run NOT IN (SELECT run FROM d)', p_schema)
		INTO stale USING p_changes, held;
	IF cardinality(stale) > 0 THEN
		UPDATE run_queue q SET owner = NULL, due_at = now(), wake = false WHERE q.run_id = ANY(stale);
		PERFORM eng_enqueue(p_tenant, p_schema, stale, NULL);
	END IF;
	IF cardinality(stale) = 0 AND cardinality(held) = jsonb_array_length(p_changes) THEN
		ch := p_changes;	-- the usual case: every lease still ours
	ELSE
		SELECT coalesce(jsonb_agg(x ORDER BY n), '[]') INTO ch
		FROM jsonb_array_elements(p_changes) WITH ORDINALITY AS a(x, n)
		WHERE (x->>'run')::uuid = ANY(held) AND NOT (x->>'run')::uuid = ANY(stale);
	END IF;

	EXECUTE format(
		'WITH x AS (SELECT * FROM jsonb_to_recordset($1) AS x(run uuid, state text, step text, attempt int, '
		'           ctx jsonb, wait jsonb, wait_event text, error jsonb)), '
		'u AS (UPDATE %I.runs r SET state = x.state, step = x.step, attempt = coalesce(x.attempt, 0), '
		'             ctx = coalesce(CASE WHEN jsonb_typeof(x.ctx) = ''object'' THEN x.ctx END, r.ctx), '
		'             wait = CASE WHEN jsonb_typeof(x.wait) = ''object'' THEN x.wait END, '
		'             wait_event = x.wait_event, '
		'             error = CASE WHEN jsonb_typeof(x.error) = ''object'' THEN x.error END, '
		'             updated_at = now(), '
		'             finished_at = CASE WHEN x.state IN (''succeeded'', ''failed'', ''cancelled'') THEN now() END '
		'      FROM x WHERE r.id = x.run AND r.state <> ''cancelled'' RETURNING r.id) '
		'SELECT coalesce(array_agg(id), ''{}'') FROM u', p_schema)
		INTO written USING ch;
	-- cancelled (or gone) meanwhile: drop the work, keep nothing of it
	DELETE FROM run_queue q
	WHERE q.run_id IN (SELECT (x->>'run')::uuid FROM jsonb_array_elements(ch) AS x)
	  AND NOT q.run_id = ANY(written);
	IF cardinality(written) = 0 THEN
		RETURN written;
	END IF;

	EXECUTE format(
		'INSERT INTO %I.run_steps AS s (run_id, seq, step, type, attempt, state, started_at, finished_at, '
		'                               output, error, summary) '
		'SELECT (c->>''run'')::uuid, x.seq, x.step, x.type, x.attempt, x.state, x.started_at, x.finished_at, '
		'       x.output, x.error, x.summary '
		'FROM jsonb_array_elements($1) AS c, '
		'     jsonb_to_recordset(coalesce(c->''steps'', ''[]'')) AS x(seq int, step text, type text, attempt int, '
		'     state text, started_at timestamptz, finished_at timestamptz, output jsonb, error jsonb, summary jsonb) '
		'WHERE (c->>''run'')::uuid = ANY($2) '
		'ON CONFLICT (run_id, seq) DO UPDATE SET state = EXCLUDED.state, finished_at = EXCLUDED.finished_at, '
		'output = EXCLUDED.output, error = EXCLUDED.error, summary = EXCLUDED.summary', p_schema)
		USING ch, written;
	EXECUTE format(
		'INSERT INTO %I.tasks (id, run_id, step, title, assignee_role, state, due_at) '
		'SELECT (c#>>''{task,id}'')::uuid, (c->>''run'')::uuid, c#>>''{task,step}'', c#>>''{task,title}'', '
		'       c#>>''{task,assignee_role}'', ''open'', (c#>>''{task,due_at}'')::timestamptz '
		'FROM jsonb_array_elements($1) AS c '
		'WHERE jsonb_typeof(c->''task'') = ''object'' AND (c->>''run'')::uuid = ANY($2) '
		'ON CONFLICT (id) DO NOTHING', p_schema)
		USING ch, written;
	FOR e IN
		SELECT (c->>'run')::uuid AS run, v AS ev
		FROM jsonb_array_elements(ch) WITH ORDINALITY AS a(c, n),
		     jsonb_array_elements(coalesce(c->'events', '[]')) WITH ORDINALITY AS b(v, m)
		WHERE (c->>'run')::uuid = ANY(written)
		ORDER BY n, m
	LOOP
		PERFORM eng_event(p_tenant, p_schema, 'run:' || e.run, e.ev->'event', e.ev->'runs');
	END LOOP;
	INSERT INTO audit_events (tenant_id, actor, action, target, detail)
	SELECT p_tenant, 'engine', d.action, 'run:' || (c->>'run'), coalesce(d.detail, '{}')
	FROM jsonb_array_elements(ch) WITH ORDINALITY AS a(c, n),
	     ROWS FROM (jsonb_to_recordset(coalesce(c->'audit', '[]')) AS (action text, detail jsonb))
	     WITH ORDINALITY AS d(action, detail, m)
	WHERE (c->>'run')::uuid = ANY(written)
	ORDER BY n, m;

	-- the queue: kept (the worker goes on), woken while held (look again
	-- now), ended (out), or a timer
	WITH x AS (
		SELECT (c->>'run')::uuid AS run, (c->>'due')::timestamptz AS due
		FROM jsonb_array_elements(ch) AS c
		WHERE NOT coalesce((c->>'keep')::boolean, false) AND (c->>'run')::uuid = ANY(written)),
	gone AS (
		DELETE FROM run_queue q USING x
		WHERE q.run_id = x.run AND x.due IS NULL AND NOT x.run = ANY(woken)),
	later AS (
		UPDATE run_queue q SET owner = NULL, wake = false,
		       due_at = CASE WHEN x.run = ANY(woken) THEN now() ELSE x.due END
		FROM x WHERE q.run_id = x.run AND (x.due IS NOT NULL OR x.run = ANY(woken))
		RETURNING q.due_at)
	SELECT min(due_at) INTO first_due FROM later;
	IF first_due IS NOT NULL THEN
		INSERT INTO engine_tenants AS t (tenant_id, next_due) VALUES (p_tenant, first_due)
		ON CONFLICT (tenant_id) DO UPDATE SET next_due = EXCLUDED.next_due WHERE t.next_due > EXCLUDED.next_due;
		IF first_due <= now() THEN
			PERFORM pg_notify('mspflow_engine', '');
		END IF;
	END IF;
	RETURN written;
END $$;
