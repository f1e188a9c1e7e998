-- Connectors: how this tenant's workflows reach its CRM, PSA, ERP and ITSM
-- systems.  The credential is a name in the tenant's vault; no secret is
-- ever stored here.
CREATE TABLE connectors (
	name               text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
	base_url           text NOT NULL,
	credential         text NULL,
	headers            jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
	timeout_ms         int NOT NULL CHECK (timeout_ms BETWEEN 100 AND 300000),
	rate_limit         jsonb NULL CHECK (rate_limit IS NULL OR jsonb_typeof(rate_limit) = 'object'),
	retry              jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(retry) = 'object'),
	redact_fields      jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(redact_fields) = 'array'),
	max_response_bytes int NOT NULL,
	follow_redirects   int NOT NULL DEFAULT 0 CHECK (follow_redirects BETWEEN 0 AND 10),
	version            int NOT NULL DEFAULT 1,
	created_by         text NOT NULL,
	created_at         timestamptz NOT NULL DEFAULT now(),
	updated_at         timestamptz NOT NULL DEFAULT now()
);
