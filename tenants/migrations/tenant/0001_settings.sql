-- Per-tenant settings (policies, branding overrides) as JSON documents,
-- one row per key, in the tenant's own schema.
CREATE TABLE settings (
	key        text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_.]{0,63}$'),
	value      jsonb NOT NULL,
	updated_at timestamptz NOT NULL DEFAULT now()
);
