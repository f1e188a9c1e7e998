-- The vault (connectors/vault.c): envelope encryption of tenant secrets.
--
-- One random 32-byte data key (DEK) per tenant and version, wrapped with
-- XChaCha20-Poly1305 by a master key (AD = "dek" | tenant | version |
-- master_kid).  The master key never enters the database; master_kid says
-- which key of the ring wrapped the row.  Deleting a tenant deletes its
-- rows here (crypto-shredding: its sealed credentials can never be opened).
CREATE TABLE tenant_keys (
	tenant_id  uuid NOT NULL REFERENCES tenants (id),
	version    int NOT NULL CHECK (version >= 1),
	master_kid text NOT NULL CHECK (master_kid ~ '^[0-9a-f]{16}$'),
	wrapped    bytea NOT NULL CHECK (length(wrapped) = 72),	-- nonce 24 || key 32 || tag 16
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, version)
);
CREATE INDEX tenant_keys_kid_idx ON tenant_keys (master_kid, tenant_id, version);

-- Which master key wraps new data keys (set by `mspflow vault rotate-master`;
-- NULL = the first key of each instance's ring).  A server creating a data
-- key reads this row FOR SHARE, so the rotation's update waits for every
-- transaction that might still wrap under the old key.
CREATE TABLE vault_master (
	one         boolean PRIMARY KEY DEFAULT true CHECK (one),
	sealing_kid text NULL CHECK (sealing_kid ~ '^[0-9a-f]{16}$'),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO vault_master DEFAULT VALUES;

-- Reads of a tenant's credentials in one round trip.  The schema name comes
-- from the access guard (generated, never client input) and is quoted with
-- %I all the same.
--
-- vault_secret: the current sealed version of one credential with the
-- wrapped data key it was sealed under.
CREATE FUNCTION vault_secret(tenant_schema text, tenant uuid, cred text)
RETURNS TABLE (type text, version int, key_version int, box bytea, master_kid text, wrapped bytea)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT c.type, c.version, c.key_version, c.box, k.master_kid, k.wrapped '
		'FROM %I.credentials c LEFT JOIN platform.tenant_keys k '
		'ON k.tenant_id = $1 AND k.version = c.key_version WHERE c.name = $2', tenant_schema)
		USING tenant, cred;
END $$;

-- vault_meta: metadata (never the box) of one credential (cred_name) or a
-- page of them (cred_name NULL: names after after_name, at most max_rows).
CREATE FUNCTION vault_meta(tenant_schema text, cred_name text, after_name text, max_rows int)
RETURNS TABLE (name text, type text, version int, fields text[], created_at text, updated_at text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT name, type, version, fields, '
		'to_char(created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(updated_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'') '
		'FROM %I.credentials WHERE ($1::text IS NULL OR name = $1) AND name > $2 '
		'ORDER BY name LIMIT $3', tenant_schema)
		USING cred_name, after_name, max_rows;
END $$;
