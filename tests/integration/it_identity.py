"""Identity end to end, real binary and PostgreSQL: the OAuth token
endpoint (form, JSON, Basic; RFC 6749 errors; failure throttling), tokens a
standard JOSE implementation verifies against /.well-known/jwks.json, API
clients (secret once, hashed), revocation and suspension reaching every
instance within 5 s, key rotation, portal users with Argon2id and login
throttling, and the bootstrap / keygen commands."""
import base64
import json
import os
import subprocess
import time
import unittest

from mfharness import BIN, _tmpdir, request, write_config
from mfidentity import (MASTER_KEY, Platform, api, b64u_dec, get_token, token_for, verify_es256,
                        wait_until)


class IdentityTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform(config={"auth_fail_per_min": 5, "key_refresh_s": 2}, servers=2)
        cls.port2 = cls.p.servers[1].port
        cls.msp = cls.p.create_tenant("msp", "acme-msp")
        cls.client = cls.p.create_client(cls.msp["id"], "globex")

    @classmethod
    def tearDownClass(cls):
        rcs = cls.p.close()
        assert rcs == [0, 0], rcs

    def test_token_endpoint_forms(self):
        a = self.p.admin
        for how in ("form", "json", "basic"):
            r = get_token(self.p.port, a["client_id"], a["client_secret"], how)
            self.assertEqual(r.status, 200, (how, r.body))
            body = r.json()
            self.assertEqual(body["token_type"], "Bearer")
            self.assertEqual(body["expires_in"], 3600)
            self.assertEqual(r.headers.get("cache-control"), "no-store")
            self.assertEqual(len(body["access_token"].split(".")), 3)

    def test_token_errors(self):
        a = self.p.admin
        r = request(self.p.port, "POST", "/oauth/token", body={"grant_type": "password", "client_id": "x"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["error"], "unsupported_grant_type")
        r = request(self.p.port, "POST", "/oauth/token", body={"client_id": a["client_id"]})
        self.assertEqual((r.status, r.json()["error"]), (400, "invalid_request"))
        r = request(self.p.port, "POST", "/oauth/token", body=b"grant_type=client_credentials",
                    headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415)
        # a wrong secret for a real client and an unknown client look alike
        r1 = get_token(self.p.port, a["client_id"], a["client_secret"] + "x", "json")
        r2 = get_token(self.p.port, "00000000-0000-4000-8000-000000000000", a["client_secret"], "json")
        for r in (r1, r2):
            self.assertEqual(r.status, 401)
            self.assertEqual(r.json()["error"], "invalid_client")
            self.assertEqual(r.json()["code"], "invalid_client")
            self.assertNotIn(a["client_secret"].encode(), r.body)

    def test_failures_are_throttled_per_client(self):
        c = self.p.api_client(self.client["id"])
        statuses = [get_token(self.p.port, c["client_id"], "sk_wrong", "json").status for _ in range(8)]
        self.assertEqual(statuses[:5], [401] * 5)
        self.assertIn(429, statuses[5:])
        r = get_token(self.p.port, c["client_id"], "sk_wrong", "json")
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)
        # even the right secret waits: the limit is on the client id
        self.assertEqual(get_token(self.p.port, c["client_id"], c["client_secret"]).status, 429)

    def test_jwks_verifies_issued_tokens(self):
        jwks = request(self.p.port, "GET", "/.well-known/jwks.json").json()
        self.assertGreaterEqual(len(jwks["keys"]), 1)
        tok = self.p.admin_token
        kid = json.loads(b64u_dec(tok.split(".")[0]))["kid"]
        header = json.loads(b64u_dec(tok.split(".")[0]))
        self.assertEqual(header["alg"], "ES256")
        jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
        self.assertEqual((jwk["kty"], jwk["crv"], jwk["alg"]), ("EC", "P-256", "ES256"))
        claims = verify_es256(jwk, tok)
        for k in ("iss", "aud", "sub", "tenant_id", "roles", "iat", "nbf", "exp", "jti"):
            self.assertIn(k, claims)
        self.assertEqual(claims["roles"], ["platform_admin"])
        self.assertEqual(claims["sub"], self.p.admin["client_id"])
        # both instances share the ring
        self.assertEqual(request(self.port2, "GET", "/.well-known/jwks.json").json(), jwks)

    def test_api_client_secret_once_and_hashed(self):
        c = self.p.api_client(self.client["id"])
        self.assertTrue(c["client_secret"].startswith("sk_"))
        self.assertGreaterEqual(len(c["client_secret"]), 40)
        self.assertEqual(c["roles"], ["client_admin"])
        r = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/api-clients/{c['client_id']}",
                self.p.admin_token)
        self.assertEqual(r.status, 200)
        self.assertNotIn("client_secret", r.json())
        listing = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/api-clients", self.p.admin_token)
        self.assertIn(c["client_id"], [x["client_id"] for x in listing.json()["items"]])
        self.assertNotIn(c["client_secret"].encode(), listing.body)
        stored = self.p.pg.psql(f"SELECT encode(secret_hash, 'hex') FROM platform.api_clients "
                                f"WHERE id = '{c['client_id']}'")
        self.assertEqual(len(stored), 64)
        self.assertNotIn(c["client_secret"], self.p.pg.psql("SELECT string_agg(t::text, ' ') FROM platform.api_clients t"))
        for s in self.p.servers:
            self.assertNotIn(c["client_secret"], s.output())

    def test_bad_roles_refused(self):
        r = api(self.p.port, "POST", f"/v1/tenants/{self.client['id']}/api-clients", self.p.admin_token,
                {"name": "x", "roles": ["platform_admin"]})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json()["errors"][0]["path"], "/roles/0")
        r = api(self.p.port, "POST", f"/v1/tenants/{self.client['id']}/api-clients", self.p.admin_token,
                {"name": "x", "roles": ["finance_approver", "client_user"]})
        self.assertEqual(r.status, 201, r.body)

    def test_deleting_a_client_stops_its_tokens_everywhere(self):
        c = self.p.api_client(self.client["id"])
        tok = token_for(self.p.port, c["client_id"], c["client_secret"])
        path = f"/v1/tenants/{self.client['id']}"
        for port in (self.p.port, self.port2):
            self.assertEqual(api(port, "GET", path, tok).status, 200)
        r = api(self.p.port, "DELETE", f"{path}/api-clients/{c['client_id']}", self.p.admin_token)
        self.assertEqual(r.status, 204)
        t0 = time.time()
        for port in (self.p.port, self.port2):
            self.assertTrue(wait_until(lambda: api(port, "GET", path, tok).status == 401, timeout=5.0))
        self.assertLess(time.time() - t0, 5.0)
        time.sleep(1.1)   # and on every worker (auth_cache_ttl_ms = 1000)
        for _ in range(6):
            r = api(self.port2, "GET", path, tok)
            self.assertEqual(r.status, 401)
            self.assertEqual(r.headers["www-authenticate"], 'Bearer error="invalid_token"')
        self.assertEqual(get_token(self.p.port, c["client_id"], c["client_secret"]).status, 401)

    def test_suspension_stops_tokens_within_5s_and_resume(self):
        cl = self.p.create_client(self.msp["id"], "suspendme")
        tok = self.p.token(cl["id"])
        path = f"/v1/tenants/{cl['id']}"
        for port in (self.p.port, self.port2):
            self.assertEqual(api(port, "GET", path, tok).status, 200)
        msp_admin = self.p.token(self.msp["id"])
        r = api(self.port2, "POST", f"{path}/suspend", msp_admin)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], "suspended")
        t0 = time.time()
        for port in (self.p.port, self.port2):
            self.assertTrue(wait_until(lambda: api(port, "GET", path, tok).status == 401, timeout=5.0))
        self.assertLess(time.time() - t0, 5.0)
        # the msp still sees its suspended client, and can resume it
        self.assertEqual(api(self.p.port, "GET", path, msp_admin).json()["status"], "suspended")
        self.assertEqual(api(self.p.port, "POST", f"{path}/resume", msp_admin).status, 200)
        for port in (self.p.port, self.port2):
            self.assertTrue(wait_until(lambda: api(port, "GET", path, tok).status == 200, timeout=5.0))
        time.sleep(1.1)   # every worker's cached status has expired (auth_cache_ttl_ms = 1000)
        # a client cannot suspend itself
        self.assertEqual(api(self.p.port, "POST", f"{path}/suspend", tok).status, 403)
        a = self.p.pg.psql(f"SELECT string_agg(action, ',' ORDER BY id) FROM platform.audit_events "
                           f"WHERE tenant_id = '{cl['id']}'")
        self.assertEqual(a, "tenant.create,api_client.create,tenant.suspend,tenant.resume")

    def test_portal_users_and_login(self):
        cl = self.p.create_client(self.msp["id"], "portal-co")
        pw = "correct horse battery staple"
        r = api(self.p.port, "POST", f"/v1/tenants/{cl['id']}/users", self.p.admin_token,
                {"email": "Ann@Portal.Example", "password": pw, "name": "Ann", "roles": ["client_admin"]})
        self.assertEqual(r.status, 201, r.body)
        user = r.json()
        self.assertEqual(user["email"], "ann@portal.example")
        self.assertNotIn("password", r.body.decode())
        h = self.p.pg.psql(f"SELECT password_hash FROM platform.users WHERE id = '{user['id']}'")
        self.assertTrue(h.startswith("$argon2id$"), h)
        r = api(self.p.port, "POST", f"/v1/tenants/{cl['id']}/users", self.p.admin_token,
                {"email": "ann@portal.example", "password": pw})
        self.assertEqual(r.status, 409)
        r = api(self.p.port, "POST", f"/v1/tenants/{cl['id']}/users", self.p.admin_token,
                {"email": "bob@portal.example", "password": "short"})
        self.assertEqual((r.status, r.json()["errors"][0]["path"]), (400, "/password"))

        r = request(self.p.port, "POST", "/portal/v1/login", body={"email": "ann@portal.example", "password": pw})
        self.assertEqual(r.status, 200, r.body)
        tok = r.json()["access_token"]
        claims = json.loads(b64u_dec(tok.split(".")[1]))
        self.assertEqual((claims["sub"], claims["tenant_id"], claims["roles"]), (user["id"], cl["id"], ["client_admin"]))
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{cl['id']}", tok).status, 200)
        # a client admin manages its own users
        r = api(self.p.port, "GET", f"/v1/tenants/{cl['id']}/users", tok)
        self.assertEqual([u["email"] for u in r.json()["items"]], ["ann@portal.example"])

        # wrong password and unknown account: the same 401, then 429 per account
        bad = [request(self.p.port, "POST", "/portal/v1/login",
                       body={"email": "ann@portal.example", "password": "wrong password!"}).status for _ in range(7)]
        self.assertEqual(bad[:5], [401] * 5)
        self.assertEqual(bad[5:], [429, 429])
        self.assertEqual(request(self.p.port, "POST", "/portal/v1/login",
                                 body={"email": "ann@portal.example", "password": pw}).status, 429)
        r = request(self.p.port, "POST", "/portal/v1/login", body={"email": "nobody@x.example", "password": pw})
        self.assertIn(r.status, (401, 429))
        for s in self.p.servers:
            self.assertNotIn(pw, s.output())
            self.assertNotIn("wrong password!", s.output())

        # deleting the user stops its token
        r = api(self.p.port, "DELETE", f"/v1/tenants/{cl['id']}/users/{user['id']}", self.p.admin_token)
        self.assertEqual(r.status, 204)
        self.assertTrue(wait_until(lambda: api(self.p.port, "GET", f"/v1/tenants/{cl['id']}", tok).status == 401,
                                   timeout=5.0))

    def test_key_rotation(self):
        old = self.p.admin_token
        d = _tmpdir("mspflow-cfg-")
        cfg = os.path.join(d, "rot.conf")
        write_config(cfg, {"database_url": self.p.pg.conninfo, "master_key": MASTER_KEY, "key_refresh_s": 2})
        r = subprocess.run([BIN, "rotate-keys", "--config", cfg], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        new_kid = json.loads(r.stdout)["kid"]
        # the servers reload every 2 s and the new key signs only after
        # 2 * 2 + 1 s: it shows in the JWKS first
        self.assertTrue(wait_until(lambda: new_kid in [k["kid"] for k in request(
            self.port2, "GET", "/.well-known/jwks.json").json()["keys"]], timeout=15))
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{self.msp['id']}", old).status, 200)

        def signed_by_new():
            t = token_for(self.p.port, self.p.admin["client_id"], self.p.admin["client_secret"])
            return t if json.loads(b64u_dec(t.split(".")[0]))["kid"] == new_kid else None
        tok = wait_until(signed_by_new, timeout=20, interval=0.5)
        self.assertTrue(tok)
        for port in (self.p.port, self.port2):
            self.assertEqual(api(port, "GET", f"/v1/tenants/{self.msp['id']}", tok).status, 200)
            self.assertEqual(api(port, "GET", f"/v1/tenants/{self.msp['id']}", old).status, 200)
        # the private keys are sealed: no PEM private key in the table
        self.assertEqual(self.p.pg.psql("SELECT count(*) FROM platform.signing_keys "
                                        "WHERE position('PRIVATE'::bytea in private_box) > 0"), "0")

    def test_bootstrap_and_keygen_commands(self):
        r = subprocess.run([BIN, "keygen"], capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 0)
        self.assertEqual(len(base64.b64decode(r.stdout.strip())), 32)
        from mfidentity import bootstrap
        b = bootstrap(self.p.pg)
        self.assertEqual(b["tenant_id"], self.p.admin["tenant_id"])   # the platform tenant is reused
        self.assertNotEqual(b["client_id"], self.p.admin["client_id"])
        tok = token_for(self.p.port, b["client_id"], b["client_secret"])
        self.assertEqual(api(self.p.port, "POST", "/v1/tenants", tok,
                             {"kind": "partner", "name": "P", "slug": "boot-partner"}).status, 201)


if __name__ == "__main__":
    unittest.main(verbosity=2)
