-- Webhooks (CONTRACT 6), the platform's part: where an inbound hook lives
-- (POST /hooks/{id} carries no token, so the id alone must lead to its
-- tenant) and which outbound delivery is due.  Everything else is in the
-- tenant's schema (tenant/0005_webhooks.sql); nothing here references
-- another table.

CREATE TABLE hooks (
	id          uuid PRIMARY KEY,
	tenant_id   uuid NOT NULL,
	schema_name text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hooks_tenant_idx ON hooks (tenant_id);

-- A row exists while a delivery has an attempt to make: due at due_at, or
-- held by a worker (owner set; due_at is then the end of its lease, so a
-- crashed worker's delivery is simply due again and is redelivered with
-- the same webhook-id).
CREATE TABLE delivery_queue (
	delivery_id uuid PRIMARY KEY,
	tenant_id   uuid NOT NULL,
	schema_name text NOT NULL,
	due_at      timestamptz NOT NULL,
	owner       uuid NULL
);
CREATE INDEX delivery_queue_due_idx ON delivery_queue (due_at);

-- What POST /hooks/{id} needs, in one round trip: the hook's tenant (only
-- while it and its parents are active), its event type and sealed secret
-- with the tenant's data key that seals it.
CREATE FUNCTION hook_lookup(p_id uuid)
RETURNS TABLE (tenant_id uuid, schema_name text, event_type text, key_version int, box bytea,
	       master_kid text, wrapped bytea)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	h record;
BEGIN
	SELECT x.tenant_id, x.schema_name INTO h FROM platform.hooks x
	JOIN platform.tenants t ON t.id = x.tenant_id
	LEFT JOIN platform.tenants p ON p.id = t.parent_id
	LEFT JOIN platform.tenants g ON g.id = p.parent_id
	WHERE x.id = p_id AND t.status = 'active' AND t.deleted_at IS NULL
	  AND coalesce(p.status, 'active') = 'active' AND p.deleted_at IS NULL
	  AND coalesce(g.status, 'active') = 'active' AND g.deleted_at IS NULL;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	RETURN QUERY EXECUTE format(
		'SELECT $2, $3, k.event_type, k.key_version, k.box, tk.master_kid, tk.wrapped FROM %I.hooks k '
		'LEFT JOIN platform.tenant_keys tk ON tk.tenant_id = $2 AND tk.version = k.key_version '
		'WHERE k.id = $1', h.schema_name) USING p_id, h.tenant_id, h.schema_name;
END $$;

-- Claims up to p_batch due deliveries for worker p_owner, leased for
-- p_lease_ms, oldest due first.  Deliveries of suspended or deleted
-- tenants (or of children of suspended ones) wait.  SKIP LOCKED:
-- concurrent claimers take different rows.
CREATE FUNCTION webhook_claim(p_owner uuid, p_lease_ms int, p_batch int)
RETURNS TABLE (delivery_id uuid, tenant_id uuid, schema_name text)
LANGUAGE sql AS $$
	WITH picked AS (
		SELECT q.delivery_id FROM platform.delivery_queue q
		JOIN platform.tenants t ON t.id = q.tenant_id
		LEFT JOIN platform.tenants p ON p.id = t.parent_id
		WHERE q.due_at <= now() AND t.status = 'active' AND t.deleted_at IS NULL
		  AND coalesce(p.status, 'active') = 'active'
		ORDER BY q.due_at LIMIT p_batch
		FOR UPDATE OF q SKIP LOCKED)
	UPDATE platform.delivery_queue q SET owner = p_owner, due_at = now() + p_lease_ms * interval '1 millisecond'
	FROM picked WHERE q.delivery_id = picked.delivery_id
	RETURNING q.delivery_id, q.tenant_id, q.schema_name
$$;

-- Everything one attempt needs: the delivery, its subscription (url,
-- sealed secret and the data key sealing it), the event, and the policy
-- documents of the tenant's chain (own, parent, grandparent; depth) for
-- its egress.allow_hosts.  No row: the delivery or its subscription is
-- gone (the caller drops the queue row).
CREATE FUNCTION webhook_load(p_tenant uuid, p_schema text, p_delivery uuid)
RETURNS TABLE (webhook text, url text, key_version int, box bytea, master_kid text, wrapped bytea,
	       attempts int, state text, event_id uuid, event_type text, data text, event_at text,
	       pol_own text, pol_parent text, pol_grand text, depth int)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT w.name, w.url, w.key_version, w.box, tk.master_kid, tk.wrapped, d.attempts, d.state, '
		'e.id, e.type, e.data::text, '
		'to_char(e.received_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.US"Z"''), '
		't.policy::text, p.policy::text, g.policy::text, '
		'(p.id IS NOT NULL)::int + (g.id IS NOT NULL)::int '
		'FROM %1$I.deliveries d JOIN %1$I.webhooks w ON w.name = d.webhook '
		'JOIN %1$I.events e ON e.id = d.event_id '
		'JOIN platform.tenants t ON t.id = $1 '
		'LEFT JOIN platform.tenants p ON p.id = t.parent_id '
		'LEFT JOIN platform.tenants g ON g.id = p.parent_id '
		'LEFT JOIN platform.tenant_keys tk ON tk.tenant_id = $1 AND tk.version = w.key_version '
		'WHERE d.id = $2', p_schema) USING p_tenant, p_delivery;
END $$;

-- Records one attempt, only while p_owner still holds the delivery's
-- lease (else nothing: the lease expired and another worker has it).
-- p_state 'pending': retry in p_next_ms; 'delivered' / 'failed': done,
-- the queue row goes.  Returns whether it was recorded.
CREATE FUNCTION webhook_done(p_schema text, p_delivery uuid, p_owner uuid, p_attempt int, p_status int,
			     p_error text, p_duration_ms int, p_started timestamptz, p_state text,
			     p_next_ms int)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
	next_at timestamptz := CASE WHEN p_state = 'pending' THEN now() + p_next_ms * interval '1 millisecond' END;
BEGIN
	PERFORM 1 FROM platform.delivery_queue q WHERE q.delivery_id = p_delivery AND q.owner = p_owner FOR UPDATE;
	IF NOT FOUND THEN
		RETURN false;
	END IF;
	EXECUTE format(
		'INSERT INTO %1$I.delivery_attempts (delivery_id, attempt, status, error, duration_ms, started_at) '
		'VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING', p_schema)
		USING p_delivery, p_attempt, p_status, p_error, p_duration_ms, p_started;
	EXECUTE format(
		'UPDATE %1$I.deliveries SET attempts = $2, state = $3, last_status = $4, last_error = $5, '
		'next_attempt = $6, updated_at = now() WHERE id = $1', p_schema)
		USING p_delivery, p_attempt, p_state, p_status, p_error, next_at;
	IF p_state = 'pending' THEN
		UPDATE platform.delivery_queue SET owner = NULL, due_at = next_at WHERE delivery_id = p_delivery;
	ELSE
		DELETE FROM platform.delivery_queue WHERE delivery_id = p_delivery;
	END IF;
	RETURN true;
END $$;

-- A delivery whose subscription or event is gone: its queue row goes.
CREATE FUNCTION webhook_drop(p_delivery uuid, p_owner uuid)
RETURNS void LANGUAGE sql AS $$
	DELETE FROM platform.delivery_queue WHERE delivery_id = p_delivery AND owner = p_owner
$$;

-- Reads for the routes, one round trip each, tenant schema from the
-- guard.  Subscriptions (never the box): one (p_name) or a page after
-- p_after.
CREATE FUNCTION webhook_rows(p_schema text, p_name text, p_after text, p_limit int)
RETURNS TABLE (name text, url text, events text, version int, created_at text, updated_at text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT name, url, array_to_json(events)::text, version, '
		'to_char(created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(updated_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'') '
		'FROM %I.webhooks WHERE ($1::text IS NULL OR name = $1) AND name > coalesce($2, '''') '
		'ORDER BY name LIMIT $3', p_schema) USING p_name, p_after, p_limit;
END $$;

-- Inbound hooks (never the box), a page after p_after (an id or '').
CREATE FUNCTION hook_rows(p_schema text, p_after text, p_limit int)
RETURNS TABLE (id text, event_type text, created_by text, created_at text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT id::text, event_type, created_by, '
		'to_char(created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'') '
		'FROM %I.hooks WHERE id > coalesce(nullif($1, '''')::uuid, ''00000000-0000-0000-0000-000000000000'') '
		'ORDER BY id LIMIT $2', p_schema) USING p_after, p_limit;
END $$;

-- A subscription's delivery log, newest first, a page after the cursor
-- p_after ("<created_at epoch micros>:<id>" of the last row, or '').
-- attempts_log: every attempt of each delivery, in order.
CREATE FUNCTION delivery_rows(p_schema text, p_webhook text, p_after text, p_limit int)
RETURNS TABLE (page_key text, id text, event_id text, event_type text, state text, attempts int,
	       last_status int, last_error text, next_attempt text, created_at text, updated_at text,
	       attempts_log text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
	a_ts bigint := CASE WHEN p_after <> '' THEN split_part(p_after, ':', 1)::bigint END;
	a_id uuid := CASE WHEN p_after <> '' THEN split_part(p_after, ':', 2)::uuid END;
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT (extract(epoch FROM d.created_at) * 1000000)::bigint::text || '':'' || d.id, '
		'd.id::text, d.event_id::text, d.event_type, d.state, d.attempts, d.last_status, d.last_error, '
		'to_char(d.next_attempt AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(d.created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(d.updated_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'(SELECT coalesce(json_agg(json_build_object(''attempt'', a.attempt, ''status'', a.status, '
		'  ''error'', a.error, ''duration_ms'', a.duration_ms, ''started_at'', '
		'  to_char(a.started_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'')) ORDER BY a.attempt), ''[]'')::text '
		' FROM %1$I.delivery_attempts a WHERE a.delivery_id = d.id) '
		'FROM %1$I.deliveries d WHERE d.webhook = $1 AND ($2::bigint IS NULL OR '
		'((extract(epoch FROM d.created_at) * 1000000)::bigint, d.id) < ($2, $3)) '
		'ORDER BY d.created_at DESC, d.id DESC LIMIT $4', p_schema) USING p_webhook, a_ts, a_id, p_limit;
END $$;
