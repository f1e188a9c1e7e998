-- Template installations (CONTRACT 8, docs/templates.md "Installing"):
-- each install of a partner template's version into this tenant, with
-- the validated parameters and the workflow version it created (or found
-- unchanged).  An upgrade is a later row naming the same workflow.  The
-- template lives in platform.templates; no foreign key leaves the schema.
CREATE TABLE installations (
	id               uuid PRIMARY KEY,
	template         text NOT NULL,		-- partner slug/name
	partner_id       uuid NOT NULL,
	version          text NOT NULL,		-- the template's semver
	params           jsonb NOT NULL CHECK (jsonb_typeof(params) = 'object'),
	workflow         text NOT NULL CHECK (workflow ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	workflow_version int NOT NULL CHECK (workflow_version >= 1),
	created_by       text NOT NULL,
	created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX installations_workflow_idx ON installations (workflow, created_at);
