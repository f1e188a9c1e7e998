-- What system a connector reaches (docs/connectors.md): metrics and spans
-- are labelled by it, a small fixed set, so their series stay few whatever
-- the tenants name their connectors.
ALTER TABLE connectors ADD COLUMN kind text NOT NULL DEFAULT 'generic'
	CHECK (kind IN ('crm', 'psa', 'erp', 'itsm', 'rmm', 'llm', 'email', 'generic'));
