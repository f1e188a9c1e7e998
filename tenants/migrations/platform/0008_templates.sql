-- The partner template catalog (CONTRACT 8), first half: partners'
-- Ed25519 signing keys and the signed template versions they publish.
-- Both are platform-wide (the catalog is read across partners), keyed by
-- the partner's tenant id; the document is stored exactly as verified.
-- (platform.signing_keys is the platform's own JWT key ring, 0002: a
-- partner's keys are partner_signing_keys.)

CREATE TABLE partner_signing_keys (
	id          uuid PRIMARY KEY,
	partner_id  uuid NOT NULL REFERENCES tenants (id),
	public_key  bytea NOT NULL CHECK (length(public_key) = 32),
	state       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
	created_at  timestamptz NOT NULL DEFAULT now(),
	revoked_at  timestamptz NULL
);
CREATE INDEX partner_signing_keys_partner_idx ON partner_signing_keys (partner_id, id);

CREATE TABLE templates (
	partner_id   uuid NOT NULL REFERENCES tenants (id),
	name         text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
	version      text NOT NULL,
	-- semver precedence: a release sorts after its pre-releases
	-- (is_release), pre-releases among themselves by their text (close
	-- enough for choosing a latest one; releases are what installs use)
	v_major      bigint NOT NULL,
	v_minor      bigint NOT NULL,
	v_patch      bigint NOT NULL,
	is_release   boolean NOT NULL,
	v_pre        text NOT NULL DEFAULT '',
	description  text NOT NULL DEFAULT '',
	tags         text[] NOT NULL DEFAULT '{}',
	document     jsonb NOT NULL,
	key_id       uuid NOT NULL REFERENCES partner_signing_keys (id),
	signature    text NOT NULL,
	yanked       boolean NOT NULL DEFAULT false,
	yanked_at    timestamptz NULL,
	published_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (partner_id, name, version)
);
CREATE INDEX templates_order_idx ON templates (partner_id, name, v_major DESC, v_minor DESC, v_patch DESC,
	is_release DESC, v_pre DESC);
-- ?q= is an ILIKE over name, description and tags: a sequential scan of
-- the latest versions, fine at catalog sizes (hundreds to thousands).
