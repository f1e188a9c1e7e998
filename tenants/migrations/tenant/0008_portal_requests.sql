-- Requests made in the client portal: each one is the event
-- portal.request.<type> it posted and the runs that event started; its
-- state is derived from those runs and their tasks when read.
CREATE TABLE portal_requests (
	id         uuid PRIMARY KEY,
	type       text NOT NULL,
	fields     jsonb NOT NULL CHECK (jsonb_typeof(fields) = 'object'),
	requester  text NOT NULL,
	event_id   uuid NOT NULL,
	run_ids    uuid[] NOT NULL DEFAULT '{}',
	created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX portal_requests_requester_idx ON portal_requests (requester, id);
CREATE INDEX portal_requests_runs_idx ON portal_requests USING gin (run_ids);
