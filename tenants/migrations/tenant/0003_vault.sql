-- Vault credentials of this tenant.  box = nonce 24 || XChaCha20-Poly1305 of
-- the secret's JSON under the tenant's data key version key_version, with
-- AD = tenant | name | version | key_version, so a box moved to another
-- tenant or row, or restored over a newer version, does not open.  Only
-- the current version is kept: a new version overwrites the old box.
-- fields lists the data's key names (metadata, never values).
CREATE TABLE credentials (
	name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	type        text NOT NULL CHECK (type IN ('bearer', 'basic', 'api_key_header', 'oauth2_client_credentials')),
	version     int NOT NULL CHECK (version >= 1),
	key_version int NOT NULL CHECK (key_version >= 1),
	box         bytea NOT NULL,
	fields      text[] NOT NULL,
	created_by  text NOT NULL,
	updated_by  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
)
