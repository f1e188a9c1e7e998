"""Set-up shared by the engine's integration tests: a platform whose
connectors may reach this machine's loopback, an msp with one client,
connectors to local mock systems, and reads of the engine's state."""
import json
import time

from mfidentity import Platform, api, wait_until

# Fast timers for tests: claims every 200 ms at the latest, leases short
# enough that a killed server's runs return within seconds.
ENGINE_CONFIG = {"egress_allow": "127.0.0.1/32, ::1/128", "engine_poll_ms": 200, "engine_lease_ms": 2000}


class EngineEnv:
    def __init__(self, config=None, servers=1, pg=None):
        c = dict(ENGINE_CONFIG)
        c.update(config or {})
        self.p = Platform(config=c, servers=servers, pg=pg)
        self.port = self.p.port
        platform_id = self.p.admin["tenant_id"]
        r = api(self.port, "PUT", f"/v1/tenants/{platform_id}/policy", self.p.admin_token,
                {"egress": {"allow_hosts": ["localhost"]}})
        assert r.status == 200, r.body
        self.msp = self.p.create_tenant("msp", "eng-msp")
        self.client = self.p.create_client(self.msp["id"], "eng-client")
        self.tid = self.client["id"]
        self.msp_tok = self.p.token(self.msp["id"])
        self.schema = self.p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{self.tid}'")
        time.sleep(1.1)  # the policy change reaches every worker's directory

    def close(self):
        return self.p.close()

    def call(self, method, path, body=None, token=None, headers=None, tid=None):
        return api(self.port, method, f"/v1/tenants/{tid or self.tid}{path}", token or self.msp_tok, body,
                   headers)

    def connector(self, name, base_url, tid=None, **extra):
        body = {"base_url": base_url}
        body.update(extra)
        r = self.call("PUT", f"/connectors/{name}", body, tid=tid)
        assert r.status in (200, 201), r.body

    def psql(self, sql):
        return self.p.pg.psql(sql)

    def tenant_schema(self, tid):
        return self.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{tid}'")

    def install(self, name, definition, tid=None):
        """Installs a definition as its next version by SQL, bypassing the
        routes: for tests of the runner alone."""
        schema = self.tenant_schema(tid) if tid else self.schema
        d = json.dumps(definition).replace("'", "''")
        ev = definition["trigger"]["event"].replace("'", "''")
        self.psql(f"""
            INSERT INTO {schema}.workflows (name, latest_version, trigger_event, created_by)
            VALUES ('{name}', 1, '{ev}', 'test')
            ON CONFLICT (name) DO UPDATE SET latest_version = workflows.latest_version + 1,
                                             trigger_event = EXCLUDED.trigger_event;
            INSERT INTO {schema}.workflow_versions (workflow, version, definition, created_by)
            SELECT '{name}', latest_version, '{d}', 'test' FROM {schema}.workflows WHERE name = '{name}';""")
        return int(self.psql(f"SELECT latest_version FROM {schema}.workflows WHERE name = '{name}'"))

    def start_runs(self, ids, workflow, version, first_step, data=None, tid=None, chunk=500):
        """Starts runs by SQL (platform.eng_start, as the routes do), in
        statements of `chunk` runs."""
        tid = tid or self.tid
        schema = self.tenant_schema(tid)
        for i in range(0, len(ids), chunk):
            runs = [{"id": r, "workflow": workflow, "version": version, "step": first_step,
                     "ctx": {"input": {}, "data": data or {}, "steps": {}}} for r in ids[i:i + chunk]]
            rj = json.dumps(runs).replace("'", "''")
            self.psql(f"SELECT platform.eng_start('{tid}', '{schema}', 'test', '{rj}'::jsonb)")

    def start_many(self, n, workflow, version, first_step, tid=None):
        """Starts n runs with new ids by SQL, built by the server."""
        tid = tid or self.tid
        schema = self.tenant_schema(tid)
        self.psql(f"""SELECT platform.eng_start('{tid}', '{schema}', 'test', (
            SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'workflow', '{workflow}',
                   'version', {version}, 'step', '{first_step}',
                   'ctx', '{{"input": {{}}, "data": {{}}, "steps": {{}}}}'::jsonb))
            FROM generate_series(1, {n})))""")

    def states(self, tid=None):
        schema = self.tenant_schema(tid) if tid else self.schema
        out = self.psql(f"SELECT state, count(*) FROM {schema}.runs GROUP BY 1")
        return {k: int(v) for k, v in (l.split("|") for l in out.splitlines() if l)}


def peer_keys(mock):
    """{Idempotency-Key: set of paths} over every request the mock peer
    received: a key naming one path once is one step's effect."""
    keys = {}
    with mock.lock:
        for rec in mock.requests:
            keys.setdefault(rec.header("Idempotency-Key"), set()).add(rec.path)
    return keys


def succeeded_steps(env, tid=None):
    """{(run_id, step): number of succeeded timeline rows}."""
    schema = env.tenant_schema(tid) if tid else env.schema
    rows = env.psql(f"SELECT run_id, step, count(*) FROM {schema}.run_steps WHERE state = 'succeeded' GROUP BY 1, 2")
    return {(r, s): int(c) for r, s, c in (l.split("|") for l in rows.splitlines() if l)}


class RunReads:
    """Reads of runs and tasks for a unittest.TestCase over the tenant
    routes: through self.call(method, path) when the test has one, else
    self.env.call."""

    def _get(self, path):
        call = getattr(self, "call", None) or self.env.call
        return call("GET", path)

    def get_run(self, rid):
        r = self._get(f"/runs/{rid}")
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def wait_state(self, rid, states, timeout=20):
        """The run once its state is one of states (a name or a tuple)."""
        states = (states,) if isinstance(states, str) else tuple(states)
        ok = wait_until(lambda: self.get_run(rid)["state"] in states, timeout, 0.1)
        run = self.get_run(rid)
        self.assertTrue(ok, f"run {rid} is {run['state']}, not {states}: {json.dumps(run)[:3000]}")
        return run

    def open_task(self, rid, timeout=20):
        """The run's open task, once there is one."""
        def find():
            r = self._get("/tasks?state=open&limit=500")
            return next((t for t in r.json()["items"] if t["run_id"] == rid), None)
        t = wait_until(find, timeout, 0.1)
        self.assertIsNotNone(t, f"an open task of run {rid}")
        return t
