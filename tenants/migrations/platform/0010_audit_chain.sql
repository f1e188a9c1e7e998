-- The tamper-evident audit log (docs/audit.md): every tenant's audit rows
-- form a hash chain.  Each row carries its per-tenant sequence number, the
-- hash of the row before it and its own hash over a fixed byte encoding
-- (audit_hash).  A trigger links every insert, whoever writes it, so the
-- many writers (engine, tenants, catalog, portal...) need not know.  Rows
-- are never updated; they are deleted only once a checkpoint seals them
-- (audit_prune), so retention shortens the chain without breaking it.

-- One field of the encoding: its length in bytes (decimal), ':', the UTF-8
-- bytes, '\n'.  The length prefix makes the encoding unambiguous whatever a
-- field holds (newlines included).
CREATE FUNCTION audit_field(p text)
RETURNS bytea LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
	SELECT convert_to(octet_length(convert_to(p, 'UTF8'))::text || ':', 'UTF8') || convert_to(p, 'UTF8') || '\x0a'::bytea
$$;

-- An entry's hash: SHA-256 of nine fields in this order: the version tag
-- "mspflow.audit.v1", the tenant id (lower-case UUID text), seq (decimal),
-- at (UTC, microseconds: 2024-01-02T03:04:05.000006Z), actor, action,
-- target, detail (the jsonb's canonical text, detail::text) and prev_hash
-- (64 lower-case hex digits; 64 zeros for a tenant's first entry).  The C
-- verifier (audit/chain.c) computes exactly the same; a NULL in any field
-- gives NULL, which the NOT NULL columns refuse.
CREATE FUNCTION audit_hash(p_tenant uuid, p_seq bigint, p_at timestamptz, p_actor text, p_action text,
			   p_target text, p_detail jsonb, p_prev bytea)
RETURNS bytea LANGUAGE sql STABLE STRICT PARALLEL SAFE AS $$
	SELECT sha256(platform.audit_field('mspflow.audit.v1') || platform.audit_field(p_tenant::text)
		|| platform.audit_field(p_seq::text)
		|| platform.audit_field(to_char(p_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))
		|| platform.audit_field(p_actor) || platform.audit_field(p_action) || platform.audit_field(p_target)
		|| platform.audit_field(p_detail::text) || platform.audit_field(encode(p_prev, 'hex')))
$$;

-- Each tenant's chain head: the last entry's seq, time and hash (and the
-- hash before it, which the linking UPDATE returns).  Locking this row is
-- what serialises a tenant's appends: under READ COMMITTED a second
-- writer's UPDATE waits for the first to commit and then re-reads the row,
-- so two transactions never link to the same predecessor.
CREATE TABLE audit_heads (
	tenant_id uuid PRIMARY KEY,
	seq       bigint NOT NULL,
	at        timestamptz NOT NULL,
	prev_hash bytea NULL,
	hash      bytea NOT NULL CHECK (length(hash) = 32)
);

ALTER TABLE audit_events
	ADD COLUMN seq bigint NULL,
	ADD COLUMN prev_hash bytea NULL,
	ADD COLUMN hash bytea NULL;

-- Rows written before this migration are chained here, per tenant in id
-- order, with the times they carry.
DO $$
DECLARE
	e record;
	cur uuid := NULL;
	n bigint;
	prev bytea;
	h bytea;
	last_at timestamptz;
BEGIN
	FOR e IN SELECT id, tenant_id, at, actor, action, target, detail FROM platform.audit_events
		 ORDER BY tenant_id, id
	LOOP
		IF cur IS DISTINCT FROM e.tenant_id THEN
			IF cur IS NOT NULL THEN
				INSERT INTO platform.audit_heads VALUES (cur, n, last_at, NULL, prev);
			END IF;
			cur := e.tenant_id;
			n := 0;
			prev := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
			last_at := '-infinity';
		END IF;
		n := n + 1;
		h := platform.audit_hash(e.tenant_id, n, e.at, e.actor, e.action, e.target, e.detail, prev);
		UPDATE platform.audit_events SET seq = n, prev_hash = prev, hash = h WHERE id = e.id;
		prev := h;
		last_at := greatest(last_at, e.at);
	END LOOP;
	IF cur IS NOT NULL THEN
		INSERT INTO platform.audit_heads VALUES (cur, n, last_at, NULL, prev);
	END IF;
END $$;

ALTER TABLE audit_events
	ALTER COLUMN seq SET NOT NULL,
	ALTER COLUMN prev_hash SET NOT NULL,
	ALTER COLUMN hash SET NOT NULL;
-- (tenant_id, seq) replaces (tenant_id, id): one index per insert, as before
DROP INDEX audit_events_tenant_idx;
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq);

-- Links NEW to its tenant's head: seq + 1, at = now (never before the
-- head's time, so times follow the chain), prev_hash = the head's hash.
-- Whatever the writer put in these columns is overwritten.
CREATE FUNCTION audit_link()
RETURNS trigger LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	ts timestamptz := clock_timestamp();
BEGIN
	LOOP
		UPDATE audit_heads h
		SET seq = h.seq + 1, at = greatest(ts, h.at), prev_hash = h.hash,
		    hash = audit_hash(NEW.tenant_id, h.seq + 1, greatest(ts, h.at), NEW.actor, NEW.action, NEW.target,
				      NEW.detail, h.hash)
		WHERE h.tenant_id = NEW.tenant_id
		RETURNING h.seq, h.at, h.prev_hash, h.hash INTO NEW.seq, NEW.at, NEW.prev_hash, NEW.hash;
		IF FOUND THEN
			IF NEW.hash IS NULL THEN
				RAISE EXCEPTION 'audit entries need a tenant, actor, action, target and detail'
					USING ERRCODE = 'not_null_violation';
			END IF;
			RETURN NEW;
		END IF;
		-- the tenant's first entry: a head at seq 0 (a concurrent first
		-- writer's insert wins; either way the UPDATE then finds it)
		INSERT INTO audit_heads (tenant_id, seq, at, prev_hash, hash)
		VALUES (NEW.tenant_id, 0, '-infinity', NULL,
			'\x0000000000000000000000000000000000000000000000000000000000000000')
		ON CONFLICT (tenant_id) DO NOTHING;
	END LOOP;
END $$;

CREATE TRIGGER audit_events_link BEFORE INSERT ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_link();

-- Checkpoints: the last entry a prune sealed before deleting it and the
-- entries before it.  Verification starts at a tenant's newest one.
CREATE TABLE audit_checkpoints (
	id        bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL,
	seq       bigint NOT NULL CHECK (seq > 0),
	hash      bytea NOT NULL CHECK (length(hash) = 32),
	at        timestamptz NOT NULL,
	pruned    bigint NOT NULL CHECK (pruned >= 0),
	sealed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_checkpoints_tenant ON audit_checkpoints (tenant_id, seq);

-- A checkpoint must name a stored entry beyond the tenant's last
-- checkpoint, with that entry's own hash and time: nobody seals a hash
-- the chain does not hold.  Sealing is serialised per tenant.
CREATE FUNCTION audit_seal_check()
RETURNS trigger LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	e record;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended('mspflow.audit.seal:' || NEW.tenant_id::text, 0));
	IF EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.tenant_id = NEW.tenant_id AND c.seq >= NEW.seq) THEN
		RAISE EXCEPTION 'audit entry % of tenant % is already sealed', NEW.seq, NEW.tenant_id
			USING ERRCODE = 'unique_violation';
	END IF;
	SELECT a.hash, a.at INTO e FROM audit_events a WHERE a.tenant_id = NEW.tenant_id AND a.seq = NEW.seq;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'no audit entry % of tenant % to seal', NEW.seq, NEW.tenant_id
			USING ERRCODE = 'foreign_key_violation';
	END IF;
	NEW.hash := e.hash;
	NEW.at := e.at;
	NEW.sealed_at := clock_timestamp();
	RETURN NEW;
END $$;

CREATE TRIGGER audit_checkpoints_check BEFORE INSERT ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION audit_seal_check();

-- Append-only: no UPDATE, no TRUNCATE, and a DELETE only of entries a
-- checkpoint has sealed.  Checkpoints are never updated or deleted.
CREATE FUNCTION audit_refuse()
RETURNS trigger LANGUAGE plpgsql
SET search_path = platform AS $$
BEGIN
	IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' THEN
		IF EXISTS (SELECT 1 FROM audit_checkpoints c WHERE c.tenant_id = OLD.tenant_id AND c.seq >= OLD.seq) THEN
			RETURN OLD;
		END IF;
		RAISE EXCEPTION 'audit entries are deleted only by sealing them (platform.audit_prune)'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
	FOR EACH ROW EXECUTE FUNCTION audit_refuse();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
	FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse();

-- A duration of a policy document (ISO 8601, already validated by the
-- server) as an interval; NULL when absent or unreadable.
CREATE FUNCTION audit_interval(p text)
RETURNS interval LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
	RETURN p::interval;
EXCEPTION WHEN others THEN
	RETURN NULL;
END $$;

-- A tenant's effective retention.audit: the shortest set along its chain
-- of ancestors, where the root's own value (else the default P365D) caps
-- everyone - the rule of policies/policy.c (a child may shorten, never
-- lengthen).
CREATE FUNCTION audit_retention(p_tenant uuid)
RETURNS interval LANGUAGE sql STABLE
SET search_path = platform AS $$
	WITH RECURSIVE up AS (
		SELECT t.id, t.parent_id, t.policy, 0 AS depth FROM tenants t WHERE t.id = p_tenant
		UNION ALL
		SELECT t.id, t.parent_id, t.policy, up.depth + 1 FROM tenants t JOIN up ON t.id = up.parent_id
		WHERE up.depth < 8)
	SELECT coalesce(min(CASE WHEN up.parent_id IS NULL
				 THEN coalesce(audit_interval(up.policy #>> '{retention,audit}'), interval '365 days')
				 ELSE audit_interval(up.policy #>> '{retention,audit}') END),
			interval '365 days')
	FROM up
$$;

-- Seals and deletes the tenant's oldest entries: the longest run from the
-- start of what is left whose times are all before p_before, at most
-- p_max of them.  The checkpoint (the last of them: its seq, hash, time,
-- and how many go) is written first, in the same transaction, so the
-- deletion is exactly what the checkpoint allows.  Returns how many
-- entries were deleted (0: nothing to do).
CREATE FUNCTION audit_prune(p_tenant uuid, p_before timestamptz, p_max int)
RETURNS bigint LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	from_seq bigint;
	upto bigint;
	n bigint;
BEGIN
	PERFORM pg_advisory_xact_lock(hashtextextended('mspflow.audit.seal:' || p_tenant::text, 0));
	SELECT a.seq INTO from_seq FROM audit_events a WHERE a.tenant_id = p_tenant ORDER BY a.seq LIMIT 1;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;
	-- the first entry too new to go, within the batch
	SELECT a.seq - 1 INTO upto FROM audit_events a
	WHERE a.tenant_id = p_tenant AND a.seq >= from_seq AND a.seq < from_seq + p_max AND a.at >= p_before
	ORDER BY a.seq LIMIT 1;
	IF NOT FOUND THEN
		SELECT max(a.seq) INTO upto FROM audit_events a
		WHERE a.tenant_id = p_tenant AND a.seq < from_seq + p_max;
	END IF;
	IF upto < from_seq THEN
		RETURN 0;
	END IF;
	SELECT count(*) INTO n FROM audit_events a WHERE a.tenant_id = p_tenant AND a.seq <= upto;
	INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, pruned)
	VALUES (p_tenant, upto, '\x0000000000000000000000000000000000000000000000000000000000000000', now(), n);
	DELETE FROM audit_events a WHERE a.tenant_id = p_tenant AND a.seq <= upto;
	RETURN n;
END $$;

-- What the server's maintenance runs now and then (audit/prune.c): every
-- tenant's entries older than its effective retention, sealed and pruned
-- in batches of p_max per tenant.  Returns the number deleted.
CREATE FUNCTION audit_prune_due(p_max int)
RETURNS bigint LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	h record;
	total bigint := 0;
	oldest timestamptz;
	cutoff timestamptz;
BEGIN
	FOR h IN SELECT tenant_id FROM audit_heads LOOP
		SELECT a.at INTO oldest FROM audit_events a WHERE a.tenant_id = h.tenant_id ORDER BY a.seq LIMIT 1;
		CONTINUE WHEN oldest IS NULL;
		cutoff := now() - audit_retention(h.tenant_id);
		IF oldest < cutoff THEN
			total := total + audit_prune(h.tenant_id, cutoff, p_max);
		END IF;
	END LOOP;
	RETURN total;
END $$;
