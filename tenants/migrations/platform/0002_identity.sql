-- Identity: API clients, portal users, the platform's JWT signing keys,
-- tenant policies and branding, and the audit trail of identity changes.

-- Deleted tenants stay as tombstones (status 'deleted', no schema) so that
-- their tokens can be refused until they expire; a slug is unique among
-- tenants that are not deleted, so it can be reused after a deletion.
ALTER TABLE tenants DROP CONSTRAINT tenants_status_check;
ALTER TABLE tenants ADD CONSTRAINT tenants_status_check
	CHECK (status IN ('active', 'suspended', 'deleted'));
ALTER TABLE tenants DROP CONSTRAINT tenants_slug_key;
CREATE UNIQUE INDEX tenants_slug_live ON tenants (slug) WHERE deleted_at IS NULL;
ALTER TABLE tenants
	ADD COLUMN branding jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(branding) = 'object'),
	ADD COLUMN policy jsonb NULL CHECK (policy IS NULL OR jsonb_typeof(policy) = 'object'),
	ADD COLUMN policy_version int NOT NULL DEFAULT 0,
	ADD COLUMN policy_updated_at timestamptz NULL;

-- API clients (OAuth 2.0 client credentials).  The secret is high-entropy
-- and shown once; only its BLAKE2b-256 digest is kept.
CREATE TABLE api_clients (
	id          uuid PRIMARY KEY,
	tenant_id   uuid NOT NULL REFERENCES tenants (id),
	name        text NOT NULL,
	roles       text[] NOT NULL,
	secret_hash bytea NOT NULL CHECK (length(secret_hash) = 32),
	created_by  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	deleted_at  timestamptz NULL
);
CREATE INDEX api_clients_tenant_idx ON api_clients (tenant_id, created_at) WHERE deleted_at IS NULL;

-- Portal users: Argon2id password hashes (libsodium's crypto_pwhash_str).
CREATE TABLE users (
	id            uuid PRIMARY KEY,
	tenant_id     uuid NOT NULL REFERENCES tenants (id),
	email         text NOT NULL CHECK (email = lower(email)),
	name          text NOT NULL DEFAULT '',
	roles         text[] NOT NULL,
	password_hash text NOT NULL,
	created_by    text NOT NULL,
	created_at    timestamptz NOT NULL DEFAULT now(),
	deleted_at    timestamptz NULL
);
CREATE UNIQUE INDEX users_tenant_email ON users (tenant_id, email) WHERE deleted_at IS NULL;
CREATE INDEX users_email_idx ON users (email) WHERE deleted_at IS NULL;
CREATE INDEX users_tenant_idx ON users (tenant_id, created_at) WHERE deleted_at IS NULL;

-- The platform key ring.  private_box = nonce || XChaCha20-Poly1305 of the
-- private key PEM under a key derived from the master key (AD = kid).
-- A key signs from active_from on (set a little in the future on rotation,
-- so every instance has loaded it first) and verifies until retire_at.
CREATE TABLE signing_keys (
	kid         text PRIMARY KEY CHECK (kid ~ '^[A-Za-z0-9_-]{1,64}$'),
	alg         text NOT NULL CHECK (alg = 'ES256'),
	public_pem  text NOT NULL,
	private_box bytea NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	active_from timestamptz NOT NULL,
	retire_at   timestamptz NULL
);

-- Who changed what.  Append-only by convention here; a later migration
-- chains the rows by hash.
CREATE TABLE audit_events (
	id        bigserial PRIMARY KEY,
	at        timestamptz NOT NULL DEFAULT now(),
	tenant_id uuid NOT NULL,
	actor     text NOT NULL,
	action    text NOT NULL,
	target    text NOT NULL DEFAULT '',
	detail    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_tenant_idx ON audit_events (tenant_id, id);
