"""Tenant provisioning at scale and its atomicity: 1,000 client tenants
created through the API (concurrently), each with its own migrated schema
and each isolated from the others; a provisioning that fails half-way
leaves nothing behind; lists page through all of them."""
import http.client
import json
import threading
import time
import unittest

from mfidentity import Platform, api, token_for

N = 1000
THREADS = 8


class Conn:
    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, token, body=None):
        h = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        self.c.request(method, path, body=data, headers=h)
        r = self.c.getresponse()
        b = r.read()
        return r.status, (json.loads(b) if b else None)


def parallel(fn, items):
    out, errs = [None] * len(items), []
    lock = threading.Lock()
    idx = iter(range(len(items)))

    def run():
        try:
            while True:
                with lock:
                    i = next(idx, None)
                if i is None:
                    return
                out[i] = fn(i, items[i])
        except Exception as e:   # surfaces in the main thread
            errs.append(e)
    ts = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errs:
        raise errs[0]
    return out


class ProvisionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform(config={"auth_ip_rate": 1000000, "auth_ip_burst": 1000000, "workers": 2})
        cls.msp = cls.p.create_tenant("msp", "scale-msp")
        cls.msp_tok = cls.p.token(cls.msp["id"])
        # the plan must not be what limits this test: the platform's policy
        # is the ceiling of every tenant's, then the msp's own
        big = {"rate_limit": {"window": "PT1M", "tenant_requests": 1000000, "client_requests": 1000000}}
        for t in (cls.p.admin["tenant_id"], cls.msp["id"]):
            st = api(cls.p.port, "PUT", f"/v1/tenants/{t}/policy", cls.p.admin_token, big)
            assert st.status == 200, st.body
        time.sleep(1.2)   # cached plans expire (auth_cache_ttl_ms = 1000)

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    def test_a_thousand_clients_each_isolated(self):
        conns = threading.local()

        def conn():
            if not hasattr(conns, "c"):
                conns.c = Conn(self.p.port)
            return conns.c

        t0 = time.time()

        def create(i, _):
            st, body = conn().call("POST", f"/v1/tenants/{self.msp['id']}/clients", self.msp_tok,
                                   {"name": f"Client {i}", "slug": f"scale-{i:04d}"})
            assert st == 201, (st, body)
            return body
        clients = parallel(create, list(range(N)))
        elapsed = time.time() - t0
        print(f"# provisioned {N} client tenants in {elapsed:.1f} s ({elapsed / N * 1000:.1f} ms each, "
              f"{THREADS} connections)")
        ids = [c["id"] for c in clients]
        self.assertEqual(len(set(ids)), N)

        # every schema exists, separately, at the latest tenant version
        q = (f"SELECT count(DISTINCT t.schema_name) FROM platform.tenants t JOIN pg_namespace n "
             f"ON n.nspname = t.schema_name WHERE t.parent_id = '{self.msp['id']}'")
        self.assertEqual(self.p.pg.psql(q), str(N))
        self.assertEqual(self.p.pg.psql(
            f"SELECT count(*) FROM pg_tables p JOIN platform.tenants t ON t.schema_name = p.schemaname "
            f"WHERE t.parent_id = '{self.msp['id']}' AND p.tablename = 'settings'"), str(N))

        # one token per client: it reaches its own tenant, not the next one, not its msp
        def check(i, c):
            st, ac = conn().call("POST", f"/v1/tenants/{c['id']}/api-clients", self.msp_tok, {"name": "iso"})
            assert st == 201, (st, ac)
            tok = token_for(self.p.port, ac["client_id"], ac["client_secret"])
            own = conn().call("GET", f"/v1/tenants/{c['id']}", tok)[0]
            other = conn().call("GET", f"/v1/tenants/{ids[(i + 1) % N]}", tok)[0]
            parent = conn().call("GET", f"/v1/tenants/{self.msp['id']}", tok)[0]
            other_keys = conn().call("GET", f"/v1/tenants/{ids[(i + 7) % N]}/api-clients", tok)[0]
            return (own, other, parent, other_keys)
        results = parallel(check, clients)
        bad = [(i, r) for i, r in enumerate(results) if r != (200, 404, 404, 404)]
        self.assertEqual(bad, [])

        # the msp lists them all, 500 a page, each once
        seen, cursor, pages = [], None, 0
        while True:
            path = f"/v1/tenants/{self.msp['id']}/clients?limit=500" + (f"&cursor={cursor}" if cursor else "")
            r = api(self.p.port, "GET", path, self.msp_tok)
            self.assertEqual(r.status, 200, r.body)
            page = r.json()
            seen += [c["id"] for c in page["items"]]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(sorted(seen), sorted(ids))
        self.assertEqual(pages, 2)   # a full last page ends the list: no empty page
        r = api(self.p.port, "GET", f"/v1/tenants/{self.msp['id']}/clients?limit=501", self.msp_tok)
        self.assertEqual(r.status, 400)
        r = api(self.p.port, "GET", f"/v1/tenants/{self.msp['id']}/clients?cursor=bogus", self.msp_tok)
        self.assertEqual(r.status, 400)

    def test_failed_provisioning_leaves_nothing(self):
        pg = self.p.pg
        before = pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'")
        pg.psql("CREATE FUNCTION public.fail_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF current_setting('search_path') LIKE 't\\_%' THEN RAISE EXCEPTION 'injected failure'; "
                "END IF; END $$")
        pg.psql("CREATE EVENT TRIGGER fail_t ON ddl_command_end WHEN TAG IN ('CREATE TABLE') "
                "EXECUTE FUNCTION public.fail_ddl()")
        try:
            r = api(self.p.port, "POST", f"/v1/tenants/{self.msp['id']}/clients", self.msp_tok,
                    {"name": "Half", "slug": "half-made"})
            self.assertEqual(r.status, 500, r.body)
            self.assertNotIn(b"injected", r.body)
        finally:
            pg.psql("DROP EVENT TRIGGER fail_t")
            pg.psql("DROP FUNCTION public.fail_ddl()")
        self.assertEqual(pg.psql("SELECT count(*) FROM platform.tenants WHERE slug = 'half-made'"), "0")
        self.assertEqual(pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't\\_%'"), before)
        r = api(self.p.port, "POST", f"/v1/tenants/{self.msp['id']}/clients", self.msp_tok,
                {"name": "Half", "slug": "half-made"})
        self.assertEqual(r.status, 201, r.body)
        # a taken slug: 409, nothing made
        r = api(self.p.port, "POST", f"/v1/tenants/{self.msp['id']}/clients", self.msp_tok,
                {"name": "Again", "slug": "half-made"})
        self.assertEqual((r.status, r.json()["code"]), (409, "slug_taken"))

    def test_bad_input_changes_nothing(self):
        before = self.p.pg.psql("SELECT count(*) FROM platform.tenants")
        for body, path in (({"name": "x"}, "/slug"), ({"name": "", "slug": "ok-slug"}, "/name"),
                           ({"name": "x", "slug": "Bad Slug"}, "/slug"),
                           ({"name": "x", "slug": "ok-slug", "extra": 1}, "/extra"),
                           ({"name": "x", "slug": "ok-slug", "branding": {"primary_color": "red"}},
                            "/branding/primary_color"),
                           ({"name": "x", "slug": "ok-slug", "branding": {"domains": ["UPPER.example"]}},
                            "/branding/domains/0")):
            r = api(self.p.port, "POST", f"/v1/tenants/{self.msp['id']}/clients", self.msp_tok, body)
            self.assertEqual(r.status, 400, (body, r.body))
            self.assertEqual(r.json()["code"], "validation_failed")
            self.assertEqual(r.json()["errors"][0]["path"], path)
        self.assertEqual(self.p.pg.psql("SELECT count(*) FROM platform.tenants"), before)


if __name__ == "__main__":
    unittest.main(verbosity=2)
