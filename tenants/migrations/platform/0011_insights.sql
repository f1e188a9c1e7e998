-- GET /v1/tenants/{t}/insights (docs/insights.md): the per-schema
-- partials of a tenant and, for an msp, of each of its live clients, in
-- one statement so the route makes one asynchronous round trip.  Each
-- schema's insights_partial pins its own search_path; the schema names
-- come from this table, never from the request.
CREATE FUNCTION insights_tree(p_tenant uuid, p_from timestamptz, p_to timestamptz, p_wf text, p_exact int)
RETURNS TABLE (tenant_id uuid, name text, kind text, partial jsonb)
LANGUAGE plpgsql STABLE SET search_path = platform
AS $$
DECLARE
	t record;
BEGIN
	FOR t IN
		SELECT x.id, x.name, x.kind, x.schema_name, x.id <> p_tenant AS child FROM tenants x
		WHERE (x.id = p_tenant OR (x.parent_id = p_tenant AND x.kind = 'client'))
		  AND x.deleted_at IS NULL AND x.schema_name IS NOT NULL
		ORDER BY child, x.name, x.id
	LOOP
		tenant_id := t.id;
		name := t.name;
		kind := t.kind;
		EXECUTE format('SELECT %I.insights_partial($1, $2, $3, $4)', t.schema_name)
			INTO partial USING p_from, p_to, p_wf, p_exact;
		RETURN NEXT;
	END LOOP;
END $$;
