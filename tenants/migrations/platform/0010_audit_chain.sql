-- The tamper-evident audit log (docs/audit.md): every tenant's audit rows
-- form a hash chain.  Each row carries its per-tenant sequence number, the
-- hash of the row before it and its own hash over a fixed byte encoding
-- (audit_hash).  The many writers (engine, tenants, catalog, portal...)
-- insert plain rows, as before, and take no lock: a chainer (audit_chain,
-- run by the server every half second and by `mspflow audit`) links the
-- committed ones afterwards in short transactions of its own.  Linking at
-- insert would hold the tenant's head locked until the writer commits,
-- making every audited transaction of a tenant wait for the one before
-- (the engine audits inside its hot transactions, several tenants per
-- batch, in any order: serial, and deadlocks).  Rows are never updated
-- but for that one fill; they are deleted only once a checkpoint seals
-- them (audit_prune), so retention shortens the chain without breaking it.

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

-- Each tenant's chain head: the last chained entry's seq and hash, and
-- when the chainer last moved it.  Only the chainer (audit_chain) writes
-- it, under the tenant's chain lock.
CREATE TABLE audit_heads (
	tenant_id  uuid PRIMARY KEY,
	seq        bigint NOT NULL CHECK (seq >= 0),
	hash       bytea NOT NULL CHECK (length(hash) = 32),
	chained_at timestamptz NOT NULL
);

-- Writers insert plain rows: the chain columns stay NULL until the chainer
-- fills them after the writer's commit (docs/audit.md, "How entries are
-- chained").  Rows written before this migration are chained the same way,
-- in id order.
ALTER TABLE audit_events
	ADD COLUMN seq bigint NULL,
	ADD COLUMN prev_hash bytea NULL,
	ADD COLUMN hash bytea NULL,
	ADD CONSTRAINT audit_events_chained CHECK ((seq IS NULL AND prev_hash IS NULL AND hash IS NULL)
		OR (seq > 0 AND length(prev_hash) = 32 AND length(hash) = 32));
-- Partial indexes, so that an insert touches exactly as many indexes as
-- before (the primary key and the unchained one): the chain order, for the
-- chained rows only, and the chainer's work list, which stays as short as
-- the not-yet-chained backlog.
DROP INDEX audit_events_tenant_idx;
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, seq) WHERE seq IS NOT NULL;
CREATE INDEX audit_events_unchained ON audit_events (tenant_id, id) WHERE hash IS NULL;

-- Chains up to p_max committed, unchained entries of one tenant, in id
-- order, after its head, in the caller's transaction; returns how many.
-- The tenant's chain lock (a transaction-level advisory lock) serialises
-- chainers: with p_wait false a chainer that finds it taken skips the
-- tenant (0) instead of waiting, so several servers share the work.  Under
-- READ COMMITTED every statement below sees what was committed when it
-- started: the head and rows another chainer linked before we got the lock,
-- and only rows whose writers have committed.  A writer that commits late
-- is simply chained by a later pass, after entries with higher ids: the
-- chain's order is the chainer's (seq), not id or time order.
CREATE FUNCTION audit_chain(p_tenant uuid, p_max int, p_wait boolean DEFAULT false)
RETURNS int LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	lk bigint := hashtextextended('mspflow.audit.chain:' || p_tenant::text, 0);
	n bigint := 0;
	prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000';
	h bytea;
	e record;
	ids bigint[] := '{}';
	seqs bigint[] := '{}';
	prevs bytea[] := '{}';
	hashes bytea[] := '{}';
BEGIN
	IF p_wait THEN
		PERFORM pg_advisory_xact_lock(lk);
	ELSIF NOT pg_try_advisory_xact_lock(lk) THEN
		RETURN 0;
	END IF;
	SELECT hd.seq, hd.hash INTO n, prev FROM audit_heads hd WHERE hd.tenant_id = p_tenant;
	IF NOT FOUND THEN
		n := 0;
		prev := '\x0000000000000000000000000000000000000000000000000000000000000000';
	END IF;
	FOR e IN SELECT a.id, a.at, a.actor, a.action, a.target, a.detail FROM audit_events a
		 WHERE a.tenant_id = p_tenant AND a.hash IS NULL ORDER BY a.id LIMIT p_max
	LOOP
		n := n + 1;
		h := audit_hash(p_tenant, n, e.at, e.actor, e.action, e.target, e.detail, prev);
		ids := array_append(ids, e.id);
		seqs := array_append(seqs, n);
		prevs := array_append(prevs, prev);
		hashes := array_append(hashes, h);
		prev := h;
	END LOOP;
	IF cardinality(ids) = 0 THEN
		RETURN 0;
	END IF;
	-- one statement for the batch; audit_guard allows exactly this fill
	UPDATE audit_events a SET seq = u.seq, prev_hash = u.prev, hash = u.hash
	FROM unnest(ids, seqs, prevs, hashes) AS u(id, seq, prev, hash)
	WHERE a.id = u.id;
	INSERT INTO audit_heads AS hd (tenant_id, seq, hash, chained_at)
	VALUES (p_tenant, n, prev, clock_timestamp())
	ON CONFLICT (tenant_id) DO UPDATE SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, chained_at = EXCLUDED.chained_at;
	RETURN cardinality(ids);
END $$;

-- Every tenant with unchained entries (a loose scan of the partial index:
-- one probe per tenant), chained until p_max entries are done in all;
-- returns how many.  What the server's chainer runs every half second
-- (audit/chainer.c) and `mspflow audit chain --all`; when it returns
-- p_max there is more to do.
CREATE FUNCTION audit_chain_due(p_max int, p_wait boolean DEFAULT false)
RETURNS bigint LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	t uuid;
	total bigint := 0;
BEGIN
	FOR t IN WITH RECURSIVE due(tenant_id) AS (
			(SELECT a.tenant_id FROM audit_events a WHERE a.hash IS NULL ORDER BY a.tenant_id LIMIT 1)
			UNION ALL
			SELECT (SELECT a.tenant_id FROM audit_events a WHERE a.hash IS NULL AND a.tenant_id > due.tenant_id
				ORDER BY a.tenant_id LIMIT 1)
			FROM due WHERE due.tenant_id IS NOT NULL)
		 SELECT due.tenant_id FROM due WHERE due.tenant_id IS NOT NULL
	LOOP
		EXIT WHEN total >= p_max;
		total := total + audit_chain(t, (p_max - total)::int, p_wait);
	END LOOP;
	RETURN total;
END $$;

-- Writers give only the content: the chain columns are the chainer's.
-- (The NOT NULL columns refuse a NULL actor, action, target or detail, so
-- every inserted row can be hashed.)  On INSERT the trigger's WHEN clause
-- does the check, so a writer's plain row runs no PL/pgSQL at all.
CREATE FUNCTION audit_guard()
RETURNS trigger LANGUAGE plpgsql
SET search_path = platform AS $$
BEGIN
	IF TG_OP = 'INSERT' THEN
		IF NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL THEN
			RAISE EXCEPTION 'audit entries are chained by the database: seq, prev_hash and hash must be NULL'
				USING ERRCODE = 'insufficient_privilege';
		END IF;
		RETURN NEW;
	END IF;
	-- UPDATE: only the chainer's one-time fill of an unchained entry
	IF OLD.hash IS NULL AND NEW.hash IS NOT NULL
	   AND (NEW.id, NEW.at, NEW.tenant_id, NEW.actor, NEW.action, NEW.target, NEW.detail)
	       IS NOT DISTINCT FROM (OLD.id, OLD.at, OLD.tenant_id, OLD.actor, OLD.action, OLD.target, OLD.detail) THEN
		RETURN NEW;
	END IF;
	RAISE EXCEPTION 'audit_events is append-only: UPDATE refused (only chaining fills an entry''s seq and hashes, once)'
		USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_guard_insert BEFORE INSERT ON audit_events
	FOR EACH ROW WHEN (NEW.seq IS NOT NULL OR NEW.prev_hash IS NOT NULL OR NEW.hash IS NOT NULL)
	EXECUTE FUNCTION audit_guard();
CREATE TRIGGER audit_events_guard_update BEFORE UPDATE ON audit_events
	FOR EACH ROW EXECUTE FUNCTION audit_guard();

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

-- Append-only: no TRUNCATE, a DELETE only of entries a checkpoint has
-- sealed (never an unchained one), no UPDATE but the chainer's fill
-- (audit_guard).  Checkpoints are never updated or deleted.
CREATE FUNCTION audit_refuse()
RETURNS trigger LANGUAGE plpgsql
SET search_path = platform AS $$
BEGIN
	IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_events' THEN
		IF OLD.seq IS NOT NULL AND EXISTS (SELECT 1 FROM audit_checkpoints c
						   WHERE c.tenant_id = OLD.tenant_id AND c.seq >= OLD.seq) THEN
			RETURN OLD;
		END IF;
		RAISE EXCEPTION 'audit entries are deleted only by sealing them (platform.audit_prune)'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
		USING ERRCODE = 'insufficient_privilege';
END $$;

CREATE TRIGGER audit_events_append_only BEFORE DELETE ON audit_events
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

-- Seals and deletes the tenant's oldest chained entries: the longest run
-- from the start of what is left (in seq order) whose times are all before
-- p_before, at most p_max of them.  Unchained entries are never sealed:
-- a checkpoint names a chained entry, at or below the head.  The checkpoint (the last of them: its seq, hash, time,
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
	SELECT a.seq INTO from_seq FROM audit_events a WHERE a.tenant_id = p_tenant AND a.seq IS NOT NULL
	ORDER BY a.seq LIMIT 1;
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
	SELECT count(*) INTO n FROM audit_events a WHERE a.tenant_id = p_tenant AND a.seq >= from_seq AND a.seq <= upto;
	INSERT INTO audit_checkpoints (tenant_id, seq, hash, at, pruned)
	VALUES (p_tenant, upto, '\x0000000000000000000000000000000000000000000000000000000000000000', now(), n);
	DELETE FROM audit_events a WHERE a.tenant_id = p_tenant AND a.seq >= from_seq AND a.seq <= upto;
	RETURN n;
END $$;

-- What the server's maintenance runs now and then (audit/prune.c): every
-- tenant's entries older than its effective retention, sealed and pruned
-- in batches of p_max per tenant, after a chain pass (so that nothing
-- committed stays unchained and out of retention's reach).  Returns the
-- number deleted.
CREATE FUNCTION audit_prune_due(p_max int)
RETURNS bigint LANGUAGE plpgsql
SET search_path = platform AS $$
DECLARE
	h record;
	total bigint := 0;
	oldest timestamptz;
	cutoff timestamptz;
BEGIN
	PERFORM audit_chain_due(p_max);
	FOR h IN SELECT tenant_id FROM audit_heads LOOP
		SELECT a.at INTO oldest FROM audit_events a WHERE a.tenant_id = h.tenant_id AND a.seq IS NOT NULL
		ORDER BY a.seq LIMIT 1;
		CONTINUE WHEN oldest IS NULL;
		cutoff := now() - audit_retention(h.tenant_id);
		IF oldest < cutoff THEN
			total := total + audit_prune(h.tenant_id, cutoff, p_max);
		END IF;
	END LOOP;
	RETURN total;
END $$;
