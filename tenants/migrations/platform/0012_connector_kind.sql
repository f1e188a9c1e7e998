-- connector_rows with the connector's kind, as the last column.
DROP FUNCTION connector_rows(text, text, text, int);
CREATE FUNCTION connector_rows(tenant_schema text, connector_name text, after_name text, max_rows int)
RETURNS TABLE (name text, base_url text, credential text, headers text, timeout_ms int,
	       rate_limit text, retry text, redact_fields text, max_response_bytes int,
	       follow_redirects int, version int, created_at text, updated_at text, kind text)
LANGUAGE plpgsql STABLE SET search_path = platform AS $$
BEGIN
	RETURN QUERY EXECUTE format(
		'SELECT name, base_url, credential, headers::text, timeout_ms, rate_limit::text, retry::text, '
		'redact_fields::text, max_response_bytes, follow_redirects, version, '
		'to_char(created_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), '
		'to_char(updated_at AT TIME ZONE ''UTC'', ''YYYY-MM-DD"T"HH24:MI:SS.MS"Z"''), kind '
		'FROM %I.connectors WHERE ($1::text IS NULL OR name = $1) AND name > $2 '
		'ORDER BY name LIMIT $3', tenant_schema)
		USING connector_name, after_name, max_rows;
END $$;
