-- Reads of a tenant's connectors in one round trip: the schema name comes
-- from the access guard (generated, never client input) and is quoted
-- with %I all the same.  One connector (connector_name) or a page of them
-- (connector_name NULL: names after after_name, at most max_rows).
CREATE FUNCTION connector_rows(tenant_schema text, connector_name text, after_name text, max_rows int)
RETURNS TABLE (name text, base_url text, credential text, headers text, timeout_ms int,
	       rate_limit text, retry text, redact_fields text, max_response_bytes int,
	       follow_redirects int, version int, created_at text, updated_at text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT name, base_url, credential, headers::text, timeout_ms, rate_limit::text, retry::text, '
		'redact_fields::text, max_response_bytes, follow_redirects, version, '
		'to_char(created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(updated_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'') '
		'FROM %I.connectors WHERE ($1::text IS NULL OR name = $1) AND name > $2 '
		'ORDER BY name LIMIT $3', tenant_schema)
		USING connector_name, after_name, max_rows;
END $$;
