-- The orchestration engine's state for this tenant (CONTRACT 6).  Every
-- run's whole state is here; the platform's run_queue only says which run
-- needs a worker and when.  No foreign key leaves the schema.

-- A workflow and its immutable versions; a run is pinned to a version.
CREATE TABLE workflows (
	name           text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	latest_version int NOT NULL,
	trigger_event  text NOT NULL,		-- of the latest version
	created_by     text NOT NULL,
	created_at     timestamptz NOT NULL DEFAULT now(),
	updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX workflows_trigger_idx ON workflows (trigger_event);

CREATE TABLE workflow_versions (
	workflow   text NOT NULL REFERENCES workflows (name) ON DELETE CASCADE,
	version    int NOT NULL CHECK (version >= 1),
	definition jsonb NOT NULL,
	created_by text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (workflow, version)
);

-- Accepted events: from the API, inbound hooks and emit steps.  The
-- idempotency key makes a replay answer the first outcome.
CREATE TABLE events (
	id              uuid PRIMARY KEY,
	seq             bigserial NOT NULL,
	type            text NOT NULL,
	data            jsonb NOT NULL,
	source          text NOT NULL,		-- "api:<actor>", "hook:<id>", "run:<id>"
	idempotency_key text NULL UNIQUE,
	request_hash    text NULL,		-- BLAKE2b of the body that came with the key
	run_ids         uuid[] NOT NULL DEFAULT '{}',
	received_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_type_idx ON events (type, received_at);
CREATE INDEX events_received_idx ON events (received_at);

-- Runs.  ctx is the run context the expressions see: {"input", "data",
-- "steps": {"<id>": {"output": ...}}}; step is where the run is (the
-- step being executed or waited on), attempt the attempts of that step so
-- far.  wait says what a waiting run waits for.
CREATE TABLE runs (
	id          uuid PRIMARY KEY,
	workflow    text NOT NULL,
	version     int NOT NULL,
	state       text NOT NULL CHECK (state IN ('pending', 'running', 'waiting', 'succeeded', 'failed', 'cancelled')),
	step        text NULL,
	attempt     int NOT NULL DEFAULT 0,
	ctx         jsonb NOT NULL,
	event_id    uuid NULL,
	wait        jsonb NULL,
	wait_event  text NULL,			-- a waiting run's event type, for wake-ups
	error       jsonb NULL,
	created_by  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	finished_at timestamptz NULL
);
CREATE INDEX runs_state_idx ON runs (state, id);
CREATE INDEX runs_workflow_idx ON runs (workflow, id);
CREATE INDEX runs_wait_event_idx ON runs (wait_event) WHERE wait_event IS NOT NULL;

-- The run's timeline: one row per step attempt, in order.
-- No foreign key to runs: only platform.eng_apply writes rows, for runs
-- it has just updated in the same statement batch, and a per-row key
-- check cost about a sixth of an apply.
CREATE TABLE run_steps (
	run_id      uuid NOT NULL,
	seq         int NOT NULL,
	step        text NOT NULL,
	type        text NOT NULL,
	attempt     int NOT NULL,
	state       text NOT NULL CHECK (state IN ('succeeded', 'failed', 'retrying', 'waiting', 'cancelled')),
	started_at  timestamptz NOT NULL,
	finished_at timestamptz NULL,
	output      jsonb NULL,
	error       jsonb NULL,
	summary     jsonb NULL,			-- redacted request/response of an http step
	PRIMARY KEY (run_id, seq)
);

-- Human tasks of approval steps.  due_at is the SLA; escalation hands the
-- task to another role once.
CREATE TABLE tasks (
	id            uuid PRIMARY KEY,
	run_id        uuid NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
	step          text NOT NULL,
	title         text NOT NULL,
	assignee_role text NOT NULL,
	state         text NOT NULL CHECK (state IN ('open', 'approved', 'rejected', 'expired', 'cancelled')),
	due_at        timestamptz NOT NULL,
	escalated     boolean NOT NULL DEFAULT false,
	decided_by    text NULL,
	comment       text NULL,
	decided_at    timestamptz NULL,
	created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_state_idx ON tasks (state, id);
CREATE INDEX tasks_run_idx ON tasks (run_id);
