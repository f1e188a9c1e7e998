"""The credential vault end to end, real PostgreSQL and the test server
(the product's routes plus GET /test/vault/{tenant}/{name}, which opens a
secret and answers its SHA-256, never the secret): credentials stored,
versioned, listed and deleted with metadata-only answers; validation
errors change nothing; audit rows; reach (404 like a missing tenant, 403
without the permission); a tampered or moved ciphertext fails cleanly;
per-tenant data-key rotation; crypto-shredding on tenant deletion;
master-key rotation while a server answers a stream of opens; and no
secret value in any response body, server log line or database dump."""
import base64
import hashlib
import json
import os
import subprocess
import threading
import time
import unittest

from mfharness import BIN, TESTSRV, Server, _tmpdir, write_config
from mfidentity import MASTER_KEY, Platform, api, token_for

SECRETS = []
BODIES = []


def secret(tag):
    v = f"sv-{tag}-" + base64.urlsafe_b64encode(os.urandom(18)).decode()
    SECRETS.append(v)
    return v


def call(port, method, path, token=None, body=None):
    r = api(port, method, path, token, body)
    BODIES.append(r.body)
    return r


def digest(data):
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode()).hexdigest()


class VaultTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = _tmpdir("mspflow-vault-")
        cls.keyfile = os.path.join(d, "master.key")
        fd = os.open(cls.keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (MASTER_KEY + "\n").encode())
        os.close(fd)
        cls.conf = {"master_key": "", "master_key_file": cls.keyfile, "auth_ip_rate": 1000000,
                    "auth_ip_burst": 1000000, "workers": 2}
        cls.p = Platform(config=cls.conf, binary=TESTSRV)
        cls.port = cls.p.port
        cls.msp = cls.p.create_tenant("msp", "vault-msp")
        cls.c1 = cls.p.create_client(cls.msp["id"], "vault-c1")
        cls.c2 = cls.p.create_client(cls.msp["id"], "vault-c2")
        cls.other = cls.p.create_tenant("msp", "vault-other")
        big = {"rate_limit": {"window": "PT1M", "tenant_requests": 1000000, "client_requests": 1000000}}
        for t in (cls.p.admin["tenant_id"], cls.msp["id"], cls.other["id"]):
            r = api(cls.port, "PUT", f"/v1/tenants/{t}/policy", cls.p.admin_token, big)
            assert r.status == 200, r.body
        cls.msp_tok = cls.p.token(cls.msp["id"])
        cls.c1_tok = cls.p.token(cls.c1["id"])
        cls.c1_user = cls.p.token(cls.c1["id"], roles=["client_user"])
        cls.c2_tok = cls.p.token(cls.c2["id"])
        cls.other_tok = cls.p.token(cls.other["id"])
        time.sleep(1.2)   # cached plans expire (auth_cache_ttl_ms = 1000)

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    def cred(self, tenant, name=""):
        return f"/v1/tenants/{tenant}/credentials" + (f"/{name}" if name else "")

    def put(self, tenant, name, body, token=None, want=None):
        r = call(self.port, "PUT", self.cred(tenant, name), token or self.msp_tok, body)
        if want is not None:
            self.assertEqual(r.status, want, r.body)
        return r

    def open(self, tenant, name, port=None):
        return call(port or self.port, "GET", f"/test/vault/{tenant}/{name}")

    def schema(self, tenant):
        return self.p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{tenant}'")

    # ---- routes ----

    def test_a_put_get_list_delete_and_versions(self):
        t = self.c1["id"]
        data = {"token": secret("bearer")}
        r = self.put(t, "crm", {"type": "bearer", "data": data}, want=201)
        m = r.json()
        self.assertEqual((m["name"], m["type"], m["version"], m["fields"]), ("crm", "bearer", 1, ["token"]))
        self.assertEqual(set(m), {"name", "type", "version", "fields", "created_at", "updated_at"})
        o = self.open(t, "crm")
        self.assertEqual(o.status, 200, o.body)
        self.assertEqual((o.json()["type"], o.json()["version"], o.json()["sha256"]), ("bearer", 1, digest(data)))
        data2 = {"token": secret("bearer2")}
        r = self.put(t, "crm", {"type": "bearer", "data": data2}, want=200)
        self.assertEqual(r.json()["version"], 2)
        self.assertEqual(r.json()["created_at"], m["created_at"])
        self.assertEqual(self.open(t, "crm").json()["sha256"], digest(data2))
        g = call(self.port, "GET", self.cred(t, "crm"), self.msp_tok)
        self.assertEqual((g.status, g.json()["version"], g.json()["fields"]), (200, 2, ["token"]))
        for n in ("list-a", "list-b", "list-c"):
            self.put(t, n, {"type": "bearer", "data": {"token": secret(n)}}, want=201)
        names, cursor = [], None
        while True:
            q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = call(self.port, "GET", self.cred(t) + q, self.c1_tok)
            self.assertEqual(page.status, 200, page.body)
            self.assertLessEqual(len(page.json()["items"]), 2)
            names += [i["name"] for i in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                break
        self.assertEqual([n for n in names if n in ("crm", "list-a", "list-b", "list-c")],
                         ["crm", "list-a", "list-b", "list-c"])
        self.assertEqual(call(self.port, "GET", self.cred(t) + "?limit=0", self.c1_tok).status, 400)
        self.assertEqual(call(self.port, "DELETE", self.cred(t, "list-c"), self.c1_tok).status, 204)
        self.assertEqual(call(self.port, "GET", self.cred(t, "list-c"), self.c1_tok).status, 404)
        self.assertEqual(call(self.port, "DELETE", self.cred(t, "list-c"), self.c1_tok).status, 404)
        self.assertEqual(self.open(t, "list-c").status, 404)
        self.assertEqual(self.p.pg.psql(f"SELECT count(*) FROM {self.schema(t)}.credentials WHERE name = 'list-c'"),
                         "0")
        # a new version after a delete starts again at 1
        self.assertEqual(self.put(t, "list-c", {"type": "bearer", "data": {"token": secret("again")}},
                                  want=201).json()["version"], 1)

    def test_b_types_and_fields(self):
        t = self.c1["id"]
        cases = [
            ("basic", {"username": "svc-user", "password": secret("basic")}, ["password", "username"]),
            ("api_key_header", {"header": "X-Api-Key", "value": secret("apikey")}, ["header", "value"]),
            ("oauth2_client_credentials", {"token_url": "https://idp.example/oauth/token", "client_id": "abc",
                                           "client_secret": secret("oauth"), "scope": "read write"},
             ["client_id", "client_secret", "scope", "token_url"]),
        ]
        for typ, data, fields in cases:
            r = self.put(t, f"t-{typ.replace('_', '-')}", {"type": typ, "data": data}, want=201)
            self.assertEqual(r.json()["fields"], fields)
            o = self.open(t, f"t-{typ.replace('_', '-')}")
            self.assertEqual((o.status, o.json()["sha256"], o.json()["type"]), (200, digest(data), typ))

    def test_c_validation_errors_change_nothing(self):
        t = self.c1["id"]
        before = self.p.pg.psql(f"SELECT count(*), coalesce(max(updated_at)::text, '') FROM {self.schema(t)}.credentials")
        audits = self.p.pg.psql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'")
        s = secret("invalid")
        bad = [
            ("crm", {"type": "bearer"}, "/data"),
            ("crm", {"type": "nope", "data": {"token": s}}, "/type"),
            ("crm", {"type": "bearer", "data": {"token": 5}}, "/data/token"),
            ("crm", {"type": "bearer", "data": {"token": ""}}, "/data/token"),
            ("crm", {"type": "bearer", "data": {"token": s, "extra": "x"}}, "/data/extra"),
            ("crm", {"type": "bearer", "data": {"token": "x" * 9000}}, "/data/token"),
            ("crm", {"type": "bearer", "data": {"token": s}, "more": 1}, "/more"),
            ("crm", {"type": "basic", "data": {"username": "u"}}, "/data/password"),
            ("crm", {"type": "api_key_header", "data": {"header": "Bad Header", "value": s}}, "/data/header"),
            ("crm", {"type": "oauth2_client_credentials",
                     "data": {"token_url": "ftp://x", "client_id": "a", "client_secret": s}}, "/data/token_url"),
            ("Bad_Name", {"type": "bearer", "data": {"token": s}}, "/name"),
            ("-dash", {"type": "bearer", "data": {"token": s}}, "/name"),
        ]
        for name, body, path in bad:
            r = self.put(t, name, body)
            self.assertEqual(r.status, 400, (name, body, r.body))
            p = r.json()
            self.assertEqual(p["code"], "validation_failed")
            self.assertIn(path, [e["path"] for e in p["errors"]], p)
            self.assertTrue(r.headers["content-type"].startswith("application/problem+json"))
        self.assertIn(self.put(t, "crm", b"{not json").status, (400, 415))
        self.assertEqual(self.p.pg.psql(f"SELECT count(*), coalesce(max(updated_at)::text, '') "
                                        f"FROM {self.schema(t)}.credentials"), before)
        self.assertEqual(self.p.pg.psql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"), audits)

    def test_d_reach(self):
        t = self.c1["id"]
        self.put(t, "reach", {"type": "bearer", "data": {"token": secret("reach")}}, want=201)
        missing = call(self.port, "GET", self.cred("00000000-0000-4000-8000-000000000000", "reach"), self.c2_tok)
        for tok in (self.c2_tok, self.other_tok):
            for method, path, body in (("GET", self.cred(t, "reach"), None), ("GET", self.cred(t), None),
                                       ("PUT", self.cred(t, "reach"), {"type": "bearer", "data": {"token": "x"}}),
                                       ("DELETE", self.cred(t, "reach"), None),
                                       ("POST", f"/v1/tenants/{t}/vault/rotate", None)):
                r = call(self.port, method, path, tok, body)
                self.assertEqual(r.status, 404, (method, path, r.body))
                a, b = r.json(), missing.json()
                a.pop("request_id")
                b.pop("request_id")
                self.assertEqual(a, b)
        for method in ("GET", "PUT", "DELETE"):
            r = call(self.port, method, self.cred(t, "reach"), self.c1_user,
                     {"type": "bearer", "data": {"token": "x"}} if method == "PUT" else None)
            self.assertEqual((r.status, r.json()["code"]), (403, "forbidden"), method)
        self.assertEqual(call(self.port, "GET", self.cred(t, "reach"), self.c1_tok).status, 200)
        self.assertEqual(call(self.port, "GET", self.cred(t, "reach"), self.msp_tok).status, 200)
        self.assertEqual(call(self.port, "GET", self.cred(t, "reach"), self.p.admin_token).status, 200)
        self.assertEqual(self.open(t, "reach").status, 200)

    def test_e_audit_rows(self):
        t = self.c2["id"]
        s = secret("audit")
        self.put(t, "aud", {"type": "bearer", "data": {"token": s}}, token=self.c2_tok, want=201)
        self.put(t, "aud", {"type": "bearer", "data": {"token": s + "2"}}, token=self.c2_tok, want=200)
        self.assertEqual(call(self.port, "DELETE", self.cred(t, "aud"), self.c2_tok).status, 204)
        self.assertEqual(call(self.port, "POST", f"/v1/tenants/{t}/vault/rotate", self.c2_tok).status, 200)
        rows = self.p.pg.psql(f"SELECT action || ' ' || target || ' ' || actor || ' ' || detail::text "
                              f"FROM platform.audit_events WHERE tenant_id = '{t}' AND action LIKE ANY "
                              f"(ARRAY['credential.%', 'vault.%']) ORDER BY id").split("\n")
        self.assertEqual([r.split(" ")[0] for r in rows],
                         ["credential.put", "credential.put", "credential.delete", "vault.rotate"])
        self.assertIn('"version": 2', rows[1])
        self.assertTrue(all(r.split(" ")[2].startswith("s:") for r in rows))
        self.assertNotIn(s, "\n".join(rows))

    def test_f_tampered_ciphertext_fails_cleanly(self):
        t = self.c1["id"]
        sch = self.schema(t)
        data = {"token": secret("tamper")}
        self.put(t, "tamper", {"type": "bearer", "data": data}, want=201)
        self.assertEqual(self.open(t, "tamper").status, 200)
        for pos in (0, 30, -1):   # nonce, ciphertext, tag
            idx = pos if pos >= 0 else "length(box) - 1"
            self.p.pg.psql(f"UPDATE {sch}.credentials SET box = set_byte(box, {idx}, get_byte(box, {idx}) # 1) "
                           f"WHERE name = 'tamper'")
            r = self.open(t, "tamper")
            self.assertEqual(r.status, 409, r.body)
            self.assertEqual(r.json()["code"], "credential_unreadable")
            self.assertIn('"tamper"', r.json()["detail"])
            self.p.pg.psql(f"UPDATE {sch}.credentials SET box = set_byte(box, {idx}, get_byte(box, {idx}) # 1) "
                           f"WHERE name = 'tamper'")
            self.assertEqual(self.open(t, "tamper").json()["sha256"], digest(data))
        srv = self.p.servers[0]
        line = srv.wait_log(lambda o: o.get("msg") == "a credential does not open" and o.get("credential") == "tamper")
        self.assertIsNotNone(line)
        self.assertEqual(line["reason"], "box_does_not_open")
        # a tampered data key
        self.p.pg.psql(f"UPDATE platform.tenant_keys SET wrapped = set_byte(wrapped, 40, get_byte(wrapped, 40) # 4) "
                       f"WHERE tenant_id = '{t}'")
        # on a server that has not cached it yet
        s2 = Server(self.p.pg, config=dict(self.p.config), binary=TESTSRV)
        try:
            r = call(s2.port, "GET", f"/test/vault/{t}/tamper")
            self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        finally:
            self.p.pg.psql(f"UPDATE platform.tenant_keys SET wrapped = set_byte(wrapped, 40, "
                           f"get_byte(wrapped, 40) # 4) WHERE tenant_id = '{t}'")
            self.assertEqual(call(s2.port, "GET", f"/test/vault/{t}/tamper").status, 200)
            self.assertEqual(s2.stop(), 0)
            VaultTest.extra_logs = getattr(VaultTest, "extra_logs", "") + s2.output()

    def test_g_swapped_ciphertexts_fail(self):
        t1, t2 = self.c1["id"], self.c2["id"]
        s1, s2 = self.schema(t1), self.schema(t2)
        d = {n: {"token": secret(n)} for n in ("swap-a", "swap-b")}
        for n in d:
            self.put(t1, n, {"type": "bearer", "data": d[n]}, want=201)
        self.put(t2, "swap-a", {"type": "bearer", "data": {"token": secret("swap-other")}}, token=self.c2_tok,
                 want=201)
        self.assertEqual(self.open(t2, "swap-a").status, 200)
        kv1 = self.p.pg.psql(f"SELECT key_version FROM {s1}.credentials WHERE name = 'swap-a'")
        # between tenants: the same name, version and key version, another tenant
        self.p.pg.psql(f"UPDATE {s2}.credentials SET box = (SELECT box FROM {s1}.credentials WHERE name = 'swap-a'), "
                       f"version = (SELECT version FROM {s1}.credentials WHERE name = 'swap-a'), "
                       f"key_version = {kv1} WHERE name = 'swap-a'")
        r = self.open(t2, "swap-a")
        self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        # between rows of one tenant
        self.p.pg.psql(f"WITH a AS (SELECT box FROM {s1}.credentials WHERE name = 'swap-a'), "
                       f"b AS (SELECT box FROM {s1}.credentials WHERE name = 'swap-b') "
                       f"UPDATE {s1}.credentials c SET box = CASE c.name WHEN 'swap-a' THEN (SELECT box FROM b) "
                       f"ELSE (SELECT box FROM a) END WHERE c.name IN ('swap-a', 'swap-b')")
        for n in d:
            r = self.open(t1, n)
            self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        # an older box restored over a newer version
        self.put(t1, "swap-a", {"type": "bearer", "data": d["swap-a"]}, want=200)
        old = self.p.pg.psql(f"SELECT encode(box, 'hex') FROM {s1}.credentials WHERE name = 'swap-a'")
        self.put(t1, "swap-a", {"type": "bearer", "data": d["swap-a"]}, want=200)
        self.assertEqual(self.open(t1, "swap-a").status, 200)
        self.p.pg.psql(f"UPDATE {s1}.credentials SET box = decode('{old}', 'hex') WHERE name = 'swap-a'")
        self.assertEqual(self.open(t1, "swap-a").status, 409)
        # a rotation refuses to re-encrypt what does not open, and changes nothing
        r = call(self.port, "POST", f"/v1/tenants/{t1}/vault/rotate", self.c1_tok)
        self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        for n in d:
            self.assertEqual(call(self.port, "DELETE", self.cred(t1, n), self.c1_tok).status, 204)
        self.assertEqual(call(self.port, "DELETE", self.cred(t2, "swap-a"), self.c2_tok).status, 204)

    def test_h_tenant_key_rotation_keeps_everything_openable(self):
        t = self.msp["id"]
        data = {f"rot-{i}": {"token": secret(f"rot{i}")} for i in range(5)}
        for n, dd in data.items():
            self.put(t, n, {"type": "bearer", "data": dd}, want=201)
        v0 = int(self.p.pg.psql(f"SELECT max(version) FROM platform.tenant_keys WHERE tenant_id = '{t}'"))
        boxes0 = self.p.pg.psql(f"SELECT string_agg(encode(box, 'hex'), ',' ORDER BY name) "
                                f"FROM {self.schema(t)}.credentials")
        for i in range(2):
            r = call(self.port, "POST", f"/v1/tenants/{t}/vault/rotate", self.msp_tok)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json(), {"key_version": v0 + i + 1, "reencrypted": len(data)})
            self.assertEqual(self.p.pg.psql(f"SELECT string_agg(version::text, ',') FROM platform.tenant_keys "
                                            f"WHERE tenant_id = '{t}'"), str(v0 + i + 1))
            self.assertEqual(self.p.pg.psql(f"SELECT count(*) FROM {self.schema(t)}.credentials "
                                            f"WHERE key_version <> {v0 + i + 1}"), "0")
            for n, dd in data.items():
                o = self.open(t, n)
                self.assertEqual((o.status, o.json()["sha256"]), (200, digest(dd)), n)
        self.assertNotEqual(boxes0, self.p.pg.psql(f"SELECT string_agg(encode(box, 'hex'), ',' ORDER BY name) "
                                                   f"FROM {self.schema(t)}.credentials"))
        # a server that never saw the old keys opens them too
        s2 = Server(self.p.pg, config=dict(self.p.config), binary=TESTSRV)
        try:
            for n, dd in data.items():
                self.assertEqual(call(s2.port, "GET", f"/test/vault/{t}/{n}").json()["sha256"], digest(dd))
        finally:
            self.assertEqual(s2.stop(), 0)
            VaultTest.extra_logs = getattr(VaultTest, "extra_logs", "") + s2.output()

    def test_i_tenant_deletion_shreds_its_keys(self):
        doomed = self.p.create_client(self.msp["id"], "vault-doomed")
        t = doomed["id"]
        data = {"token": secret("doomed")}
        self.put(t, "crm", {"type": "bearer", "data": data}, want=201)
        self.assertEqual(self.open(t, "crm").status, 200)
        sch = self.schema(t)
        row = self.p.pg.psql(f"SELECT version || ',' || key_version || ',' || encode(box, 'hex') "
                             f"FROM {sch}.credentials WHERE name = 'crm'")
        version, key_version, box = row.split(",")
        wrapped = self.p.pg.psql(f"SELECT encode(wrapped, 'hex') FROM platform.tenant_keys WHERE tenant_id = '{t}'")
        self.assertEqual(len(wrapped), 144)
        self.assertEqual(call(self.port, "DELETE", f"/v1/tenants/{t}", self.msp_tok).status, 204)
        self.assertEqual(self.p.pg.psql(f"SELECT count(*) FROM platform.tenant_keys WHERE tenant_id = '{t}'"), "0")
        dump = subprocess.run([os.path.join(self.p.pg.bindir, "pg_dump"), "-h", self.p.pg.sock, "-p",
                               str(self.p.pg.port), "-U", "mspflow", "mspflow"], capture_output=True, text=True)
        self.assertEqual(dump.returncode, 0, dump.stderr)
        self.assertNotIn(wrapped, dump.stdout)
        self.assertNotIn(wrapped[16:80], dump.stdout)
        # restored under a surviving tenant
        live = self.c1["id"]
        self.p.pg.psql(f"INSERT INTO {self.schema(live)}.credentials (name, type, version, key_version, box, fields, "
                       f"created_by, updated_by) VALUES ('restored', 'bearer', {version}, {key_version}, "
                       f"decode('{box}', 'hex'), '{{token}}', 'test', 'test')")
        r = self.open(live, "restored")
        self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        # restored under the tombstoned id, schema and all
        self.p.pg.psql(f"CREATE SCHEMA {sch}; CREATE TABLE {sch}.credentials (LIKE {self.schema(live)}.credentials); "
                       f"INSERT INTO {sch}.credentials SELECT 'crm', type, version, key_version, box, fields, "
                       f"created_by, updated_by, created_at, updated_at FROM {self.schema(live)}.credentials "
                       f"WHERE name = 'restored'; "
                       f"UPDATE platform.tenants SET schema_name = '{sch}' WHERE id = '{t}'")
        r = self.open(t, "crm")
        self.assertEqual((r.status, r.json()["code"]), (409, "credential_unreadable"), r.body)
        self.p.pg.psql(f"UPDATE platform.tenants SET schema_name = NULL WHERE id = '{t}'; DROP SCHEMA {sch} CASCADE; "
                       f"DELETE FROM {self.schema(live)}.credentials WHERE name = 'restored'")
        line = self.p.servers[0].wait_log(lambda o: o.get("msg") == "a credential does not open"
                                          and o.get("tenant_id") == t)
        self.assertEqual(line["reason"], "data_key_missing")

    # ---- master key rotation (changes the key file: runs after the others) ----

    def test_y_master_rotation_under_load(self):
        items = []
        for t, tok in ((self.c1["id"], self.c1_tok), (self.c2["id"], self.c2_tok), (self.msp["id"], self.msp_tok)):
            for i in range(3):
                dd = {"token": secret(f"mr{i}")}
                self.put(t, f"mr-{i}", {"type": "bearer", "data": dd}, token=tok, want=None)
                items.append((t, f"mr-{i}", digest(dd)))
        old_kids = set(self.p.pg.psql("SELECT string_agg(DISTINCT master_kid, ',') FROM platform.tenant_keys")
                       .split(","))
        self.assertEqual(len(old_kids), 1)
        stop, results, lock = threading.Event(), [], threading.Lock()

        def hammer(k):
            import http.client
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            i = k
            while not stop.is_set():
                t, n, h = items[i % len(items)]
                i += 1
                try:
                    c.request("GET", f"/test/vault/{t}/{n}")
                    r = c.getresponse()
                    body = r.read()
                    ok = r.status == 200 and json.loads(body)["sha256"] == h
                except Exception as e:   # reconnect and count it as a failure
                    ok, body = False, repr(e).encode()
                    c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                with lock:
                    results.append((ok, body))
            c.close()
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(4)]
        for th in threads:
            th.start()
        time.sleep(0.5)
        cfg = os.path.join(_tmpdir("mspflow-cfg-"), "rot.conf")
        write_config(cfg, {"database_url": self.p.pg.conninfo, "master_key_file": self.keyfile})
        t0 = time.time()
        r = subprocess.run([BIN, "vault", "rotate-master", "--config", cfg], capture_output=True, text=True,
                           timeout=120)
        took = time.time() - t0
        time.sleep(1.0)
        stop.set()
        for th in threads:
            th.join()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        summary = json.loads(r.stdout)
        print(f"# rotate-master took {took:.2f} s; {len(results)} opens during it; summary {summary}")
        fails = [b for ok, b in results if not ok]
        self.assertEqual(fails, [], fails[:3])
        self.assertGreater(len(results), 100)
        self.assertEqual(summary["mode"], "file")
        self.assertTrue(summary["done"])
        self.assertEqual(summary["tenant_keys"]["unopenable"], 0)
        self.assertGreaterEqual(summary["tenant_keys"]["rewrapped"], 3)
        self.assertGreaterEqual(summary["signing_keys"]["resealed"], 1)
        self.assertEqual(summary["still_wrapped_by_others"], {})
        self.assertEqual(set(summary["old_kids"]), old_kids)
        new_kid = summary["new_kid"]
        self.assertNotIn(MASTER_KEY, r.stdout + r.stderr)
        with open(self.keyfile) as f:
            keys = f.read().split()
        self.assertEqual(len(keys), 1)
        new_key = keys[0]
        self.assertNotEqual(new_key, MASTER_KEY)
        self.assertNotIn(new_key, r.stdout + r.stderr)
        self.assertEqual(os.stat(self.keyfile).st_mode & 0o777, 0o600)
        self.assertEqual(self.p.pg.psql("SELECT string_agg(DISTINCT master_kid, ',') FROM platform.tenant_keys"),
                         new_kid)
        # every plaintext intact on the running server
        for t, n, h in items:
            self.assertEqual(self.open(t, n).json()["sha256"], h)
        # the old key alone opens nothing
        conf = dict(self.conf, master_key=MASTER_KEY, master_key_file="")
        old = Server(self.p.pg, config=dict(self.p.config, **conf), binary=TESTSRV)
        try:
            for t, n, h in items:
                o = call(old.port, "GET", f"/test/vault/{t}/{n}")
                self.assertEqual((o.status, o.json()["code"]), (409, "credential_unreadable"))
            self.assertIsNotNone(old.wait_log(lambda o: o.get("msg") == "a signing key does not open with this "
                                              "master key"))
        finally:
            self.assertEqual(old.stop(), 0)
            VaultTest.extra_logs = getattr(VaultTest, "extra_logs", "") + old.output()
        # a new instance with the new key alone opens everything, and signs
        conf = dict(self.conf, master_key=new_key, master_key_file="")
        new = Server(self.p.pg, config=dict(self.p.config, **conf), binary=TESTSRV)
        try:
            for t, n, h in items:
                o = call(new.port, "GET", f"/test/vault/{t}/{n}")
                self.assertEqual((o.status, o.json()["sha256"]), (200, h))
            tok = token_for(new.port, self.p.admin["client_id"], self.p.admin["client_secret"])
            self.assertEqual(api(new.port, "GET", f"/v1/tenants/{self.msp['id']}", tok).status, 200)
            # and new data keys are wrapped under it
            nt = self.p.create_client(self.msp["id"], "vault-after", port=new.port)
            self.put(nt["id"], "x", {"type": "bearer", "data": {"token": secret("after")}}, want=201)
            self.assertEqual(self.p.pg.psql(f"SELECT master_kid FROM platform.tenant_keys "
                                            f"WHERE tenant_id = '{nt['id']}'"), new_kid)
        finally:
            self.assertEqual(new.stop(), 0)
            VaultTest.extra_logs = getattr(VaultTest, "extra_logs", "") + new.output()
        SECRETS.append(new_key)
        # keys from a list: the operator puts a new key first; the command re-wraps under it
        k3 = subprocess.run([BIN, "keygen"], capture_output=True, text=True, timeout=10).stdout.strip()
        SECRETS.append(k3)
        write_config(cfg, {"database_url": self.p.pg.conninfo, "master_key": f"{k3}, {new_key}"})
        r = subprocess.run([BIN, "vault", "rotate-master", "--config", cfg], capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        summary = json.loads(r.stdout)
        self.assertEqual((summary["mode"], summary["other_kids"], summary["still_wrapped_by_others"],
                          summary["done"]), ("list", [new_kid], {}, True))
        self.assertGreaterEqual(summary["tenant_keys"]["rewrapped"], 4)
        self.assertNotIn(k3, r.stdout + r.stderr)
        self.assertEqual(self.p.pg.psql("SELECT string_agg(DISTINCT master_kid, ',') FROM platform.tenant_keys"),
                         summary["sealing_kid"])
        only = Server(self.p.pg, config=dict(self.p.config, **dict(self.conf, master_key=k3, master_key_file="")),
                      binary=TESTSRV)
        try:
            for t, n, h in items:
                o = call(only.port, "GET", f"/test/vault/{t}/{n}")
                self.assertEqual((o.status, o.json()["sha256"]), (200, h))
        finally:
            self.assertEqual(only.stop(), 0)
            VaultTest.extra_logs = getattr(VaultTest, "extra_logs", "") + only.output()

    def test_z_no_secret_in_any_body_log_or_table(self):
        self.assertGreater(len(SECRETS), 20)
        from mfharness import request
        metrics = request(self.p.servers[0].admin_port, "GET", "/metrics")
        self.assertIn(b'mspflow_vault_opens_total{outcome="opened"}', metrics.body)
        BODIES.append(metrics.body)
        logs = "\n".join(s.output() for s in self.p.servers) + getattr(VaultTest, "extra_logs", "")
        bodies = b"\n".join(BODIES)
        dump = subprocess.run([os.path.join(self.p.pg.bindir, "pg_dump"), "-h", self.p.pg.sock, "-p",
                               str(self.p.pg.port), "-U", "mspflow", "mspflow"], capture_output=True,
                              text=True).stdout
        self.assertIn("credential.put", dump)
        for s in SECRETS + [MASTER_KEY]:
            self.assertNotIn(s, logs)
            self.assertNotIn(s.encode(), bodies)
            self.assertNotIn(s, dump)


if __name__ == "__main__":
    unittest.main(verbosity=2)
