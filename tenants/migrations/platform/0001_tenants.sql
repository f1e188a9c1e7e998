-- The tenant registry: the hierarchy platform -> partner | msp -> client.
-- Each tenant's own data lives in its own schema (schema_name, generated,
-- never from input); this table is the only cross-tenant list and stays small.
CREATE TABLE tenants (
	id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	parent_id   uuid NULL REFERENCES tenants (id),
	kind        text NOT NULL CHECK (kind IN ('platform', 'partner', 'msp', 'client')),
	name        text NOT NULL,
	slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
	schema_name text UNIQUE CHECK (schema_name ~ '^t_[0-9a-z_]{1,60}$'),
	status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now(),
	deleted_at  timestamptz NULL,
	CHECK ((kind = 'platform') = (parent_id IS NULL))
);

CREATE INDEX tenants_parent_idx ON tenants (parent_id) WHERE deleted_at IS NULL;
-- exactly one platform root
CREATE UNIQUE INDEX tenants_one_platform ON tenants ((true)) WHERE kind = 'platform';
