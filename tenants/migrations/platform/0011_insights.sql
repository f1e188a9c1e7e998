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

-- The tenant schemas with insights facts waiting to be folded into their
-- rollup (docs/insights.md, "Folding"): a writer that appends facts adds
-- its schema when missing (<schema>.insights_note_pending), a folder that
-- leaves nothing pending removes it.  A schema may be listed twice (two
-- writers adding it at once): no unique key, so no writer ever waits for
-- another's insert.
CREATE TABLE insights_due (
	schema_name text NOT NULL,
	since       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX insights_due_schema ON insights_due (schema_name);

-- One step of the server's folder (engine/insights_folder.c): folds up to
-- p_max pending facts of the first listed schema after p_after (name
-- order), in the caller's transaction, and returns that schema and how
-- many; no row when no schema is listed after p_after (the pass is over).
-- Each schema its own statement, so its own short transaction; a schema
-- another folder holds is skipped (0).  A listed schema that is gone (a
-- dropped tenant) is taken off the list.
CREATE FUNCTION insights_fold_next(p_max int, p_after text)
RETURNS TABLE (schema_name text, folded int)
LANGUAGE plpgsql SET search_path = platform
AS $$
DECLARE
	s text;
BEGIN
	SELECT d.schema_name INTO s FROM insights_due d WHERE d.schema_name > p_after ORDER BY d.schema_name LIMIT 1;
	IF NOT FOUND THEN
		RETURN;
	END IF;
	schema_name := s;
	IF to_regprocedure(format('%I.insights_fold(integer,boolean)', s)) IS NULL THEN
		DELETE FROM insights_due d WHERE d.schema_name = s;
		folded := 0;
	ELSE
		EXECUTE format('SELECT %I.insights_fold($1, false)', s) INTO folded USING p_max;
	END IF;
	RETURN NEXT;
END $$;

-- Folds every listed schema's pending facts now, waiting for a folder
-- that holds one, in the caller's transaction; returns how many facts.
-- For tests, benchmarks and operators (`SELECT platform.insights_fold()`):
-- the server's folder does the same continuously.
CREATE FUNCTION insights_fold(p_batch int DEFAULT 100000)
RETURNS bigint LANGUAGE plpgsql SET search_path = platform
AS $$
DECLARE
	s text;
	n int;
	total bigint := 0;
BEGIN
	FOR s IN SELECT DISTINCT d.schema_name FROM insights_due d ORDER BY 1 LOOP
		IF to_regprocedure(format('%I.insights_fold(integer,boolean)', s)) IS NULL THEN
			DELETE FROM insights_due d WHERE d.schema_name = s;
			CONTINUE;
		END IF;
		LOOP
			EXECUTE format('SELECT %I.insights_fold($1, true)', s) INTO n USING p_batch;
			total := total + n;
			EXIT WHEN n < p_batch;
		END LOOP;
	END LOOP;
	RETURN total;
END $$;
