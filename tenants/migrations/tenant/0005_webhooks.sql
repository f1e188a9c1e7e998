-- Webhooks of this tenant (CONTRACT 6): inbound hooks that turn signed
-- HTTP requests into events, outbound subscriptions that receive the
-- tenant's events, and the durable delivery log.  Secrets are stored
-- sealed (box = nonce || XChaCha20-Poly1305 under the tenant's data key
-- key_version, see connectors/vault.h), never in plaintext.  No foreign
-- key leaves the schema; the platform's hooks and delivery_queue tables
-- only say where a hook lives and which delivery is due.

-- Inbound hooks.  The receipt of a message is its event: events.source
-- "hook:<id>" and events.idempotency_key "hook:<id>:<webhook-id>", so a
-- redelivered message is acknowledged with the first event, atomically.
CREATE TABLE hooks (
	id          uuid PRIMARY KEY,
	event_type  text NOT NULL,
	key_version int NOT NULL CHECK (key_version >= 1),
	box         bytea NOT NULL,
	created_by  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now()
);

-- Outbound subscriptions: events lists event types ("crm.deal.won"),
-- prefix patterns ("crm.*": every type under crm.) or '*' (every type).
CREATE TABLE webhooks (
	name        text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	url         text NOT NULL,
	events      text[] NOT NULL,
	key_version int NOT NULL CHECK (key_version >= 1),
	box         bytea NOT NULL,
	version     int NOT NULL DEFAULT 1,
	created_by  text NOT NULL,
	created_at  timestamptz NOT NULL DEFAULT now(),
	updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhooks_events_idx ON webhooks USING gin (events);

-- One delivery per (subscription, event).  The webhook-id the receiver
-- sees is the delivery id, the same on every attempt.
CREATE TABLE deliveries (
	id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	webhook      text NOT NULL REFERENCES webhooks (name) ON DELETE CASCADE,
	event_id     uuid NOT NULL,
	event_type   text NOT NULL,
	state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
	attempts     int NOT NULL DEFAULT 0,
	last_status  int NULL,
	last_error   text NULL,
	next_attempt timestamptz NULL,
	created_at   timestamptz NOT NULL DEFAULT now(),
	updated_at   timestamptz NOT NULL DEFAULT now(),
	UNIQUE (webhook, event_id)
);
CREATE INDEX deliveries_webhook_idx ON deliveries (webhook, created_at, id);

-- Every attempt, in order: what came back and how long it took (never a
-- header value, a body or the secret).
CREATE TABLE delivery_attempts (
	delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
	attempt     int NOT NULL,
	status      int NULL,
	error       text NULL,
	duration_ms int NOT NULL,
	started_at  timestamptz NOT NULL,
	PRIMARY KEY (delivery_id, attempt)
);

-- The outbox: every accepted event (API, hooks, emit steps all insert
-- through platform.eng_event) gets one delivery per matching subscription
-- in the same transaction, and a row of platform.delivery_queue that the
-- workers claim.  Tenant tables are named through TG_TABLE_SCHEMA and
-- platform ones qualified: the caller's search_path does not matter.
CREATE FUNCTION events_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
	ids uuid[];
	tid uuid;
	parts text[] := string_to_array(NEW.type, '.');
	-- what a subscription may list to receive this type: the type, '*',
	-- and "<prefix>.*" for every proper prefix ("a.*", "a.b.*" of "a.b.c")
	cands text[] := ARRAY[NEW.type, '*'];
BEGIN
	FOR i IN 1 .. coalesce(array_length(parts, 1), 1) - 1 LOOP
		cands := cands || (array_to_string(parts[1:i], '.') || '.*');
	END LOOP;
	EXECUTE format(
		'WITH d AS (INSERT INTO %1$I.deliveries (webhook, event_id, event_type, next_attempt) '
		'SELECT w.name, $1, $2, now() FROM %1$I.webhooks w WHERE w.events && $3 '
		'ON CONFLICT (webhook, event_id) DO NOTHING RETURNING id) '
		'SELECT array_agg(id) FROM d', TG_TABLE_SCHEMA)
		INTO ids USING NEW.id, NEW.type, cands;
	IF ids IS NULL THEN
		RETURN NULL;
	END IF;
	SELECT t.id INTO tid FROM platform.tenants t WHERE t.schema_name = TG_TABLE_SCHEMA;
	INSERT INTO platform.delivery_queue (delivery_id, tenant_id, schema_name, due_at)
	SELECT d, tid, TG_TABLE_SCHEMA, now() FROM unnest(ids) AS d;
	PERFORM pg_notify('mspflow_webhooks', '');
	RETURN NULL;
END $$;

CREATE TRIGGER events_outbox AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_outbox();
