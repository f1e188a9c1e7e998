"""Connectors over real HTTP: definitions stored per tenant (validated,
versioned, audited, reach-checked), calls through them to local mock
systems with each auth kind, one OAuth2 token fetch shared by 100
concurrent calls, the peer's Retry-After honoured, timeouts, oversized
responses cut off, the outbound rate limit held, redirects re-checked,
the egress guard and the tenant's host policy refusing what they must,
Idempotency-Key and traceparent on every call, and no secret in any
response or log line."""
import base64
import json
import threading
import time
import unittest
import uuid

from mfharness import Server
from mfidentity import Platform, api
from mfmock import MockServer, Reply

SECRETS = {
    "bearer": "brr-" + uuid.uuid4().hex,
    "password": "pw-" + uuid.uuid4().hex,
    "apikey": "key-" + uuid.uuid4().hex,
    "client_secret": "cs-" + uuid.uuid4().hex,
}


class ConnectorsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tokens_issued = []
        cls.token_lock = threading.Lock()
        cls.limited_calls = 0

        def echo(rec):
            return Reply(200, {"method": rec.method, "path": rec.path, "headers": dict(rec.headers),
                               "body": rec.body.decode(), "password": "should-be-hidden"})

        def token(rec):
            auth = rec.header("Authorization") or ""
            want = "Basic " + base64.b64encode(f"psa-client:{SECRETS['client_secret']}".encode()).decode()
            if auth != want:
                return Reply(401, {"error": "invalid_client"})
            with cls.token_lock:
                t = f"access-{len(cls.tokens_issued)}-{uuid.uuid4().hex}"
                cls.tokens_issued.append(t)
            # slow enough that concurrent callers overlap the fetch
            return Reply(200, {"access_token": t, "token_type": "Bearer", "expires_in": 3600}, delay=0.3)

        def token_body(rec):
            import urllib.parse
            form = urllib.parse.parse_qs(rec.body.decode())
            if rec.header("Authorization") or form.get("client_secret") != [SECRETS["client_secret"]] or \
                    form.get("client_id") != ["psa-client"] or form.get("grant_type") != ["client_credentials"] or \
                    form.get("scope") != ["tickets.read tickets.write"]:
                return Reply(401, {"error": "invalid_client"})
            with cls.token_lock:
                t = f"access-{len(cls.tokens_issued)}-{uuid.uuid4().hex}"
                cls.tokens_issued.append(t)
            return Reply(200, {"access_token": t, "token_type": "bearer", "expires_in": 3600})

        def protected(rec):
            with cls.token_lock:
                good = cls.tokens_issued and rec.header("Authorization") == "Bearer " + cls.tokens_issued[-1]
            return Reply(200, {"ok": True}) if good else Reply(401, {"error": "bad token"})

        def limited(rec):
            cls.limited_calls += 1
            if cls.limited_calls == 1:
                return Reply(429, {"error": "slow down"}, headers={"Retry-After": "2"})
            return Reply(200, {"ok": True})

        cls.mock = MockServer({
            "/echo": echo,
            "/oauth/token": token,
            "/oauth/form-token": token_body,
            "/api/": protected,
            "/limited": limited,
            "/slow": lambda rec: Reply(200, {"late": True}, delay=3),
            "/big": lambda rec: Reply(200, b"x" * (3 * 1024 * 1024), headers={"Content-Type": "text/plain"}),
            "/chunked-big": lambda rec: Reply(200, chunks=[b"y" * 65536] * 48),
            "/to-loopback": lambda rec: Reply(302, headers={"Location": f"http://127.0.0.1:{cls.mock.port}/echo"}),
            "/to-echo": lambda rec: Reply(302, headers={"Location": "/echo?from=redirect"}),
            "/busy": lambda rec: Reply(503, {"error": "busy"}, headers={"Retry-After": "120"}),
        })
        # the platform lets connectors reach this machine's loopback (tests only)
        cls.p = Platform(config={"egress_allow": "127.0.0.1/32, ::1/128"})
        cls.base = f"http://localhost:{cls.mock.port}"
        cls.platform_id = cls.p.admin["tenant_id"]
        r = api(cls.p.port, "PUT", f"/v1/tenants/{cls.platform_id}/policy", cls.p.admin_token,
                {"egress": {"allow_hosts": ["localhost"]}})
        assert r.status == 200, r.body
        cls.msp = cls.p.create_tenant("msp", "cx-msp")
        cls.client = cls.p.create_client(cls.msp["id"], "cx-client")
        cls.other = cls.p.create_tenant("msp", "cx-other")
        cls.msp_tok = cls.p.token(cls.msp["id"])
        cls.client_tok = cls.p.token(cls.client["id"])
        cls.other_tok = cls.p.token(cls.other["id"])
        cls.user_tok = cls.p.token(cls.client["id"], roles=["client_user"])
        cls.responses = []
        t = cls.client["id"]
        cls.cred("bearer-cred", "bearer", {"token": SECRETS["bearer"]})
        cls.cred("basic-cred", "basic", {"username": "svc", "password": SECRETS["password"]})
        cls.cred("key-cred", "api_key_header", {"header": "X-Psa-Key", "value": SECRETS["apikey"]})
        cls.cred("oauth-cred", "oauth2_client_credentials", {
            "token_url": f"{cls.base}/oauth/token", "client_id": "psa-client",
            "client_secret": SECRETS["client_secret"]})
        cls.cred("oauth-body-cred", "oauth2_client_credentials", {
            "token_url": f"{cls.base}/oauth/form-token", "client_id": "psa-client", "auth_method": "body",
            "scope": "tickets.read tickets.write", "client_secret": SECRETS["client_secret"]})
        cls.tid = t
        time.sleep(1.1)  # the policy change reaches every worker's directory

    @classmethod
    def tearDownClass(cls):
        rc = cls.p.close()
        cls.mock.close()
        assert rc == [0], rc

    @classmethod
    def call_api(cls, method, path, token=None, body=None, headers=None):
        r = api(cls.p.port, method, path, token or cls.client_tok, body, headers)
        cls.responses.append(r)
        return r

    @classmethod
    def cred(cls, name, kind, data):
        r = cls.call_api("PUT", f"/v1/tenants/{cls.client['id']}/credentials/{name}", cls.msp_tok,
                         {"type": kind, "data": data})
        assert r.status in (200, 201), r.body

    def put(self, name, body, tok=None, tid=None):
        return self.call_api("PUT", f"/v1/tenants/{tid or self.tid}/connectors/{name}", tok, body)

    def try_call(self, name, body=None, tok=None, headers=None):
        return self.call_api("POST", f"/v1/tenants/{self.tid}/connectors/{name}/calls", tok,
                             body if body is not None else {"method": "GET", "path": "/echo"}, headers)

    # ---- definitions ----

    def test_crud_versions_audit_and_reach(self):
        r = self.put("crm", {"base_url": self.base, "headers": {"Accept": "application/json"}, "timeout_ms": 2000})
        self.assertEqual(r.status, 201, r.body)
        c = r.json()
        self.assertEqual((c["name"], c["version"], c["credential"], c["timeout_ms"], c["kind"]),
                         ("crm", 1, None, 2000, "generic"))
        r = self.put("crm", {"base_url": self.base + "/v2", "credential": "bearer-cred", "kind": "crm"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["version"], r.json()["base_url"], r.json()["kind"]), (2, self.base + "/v2", "crm"))
        got = self.call_api("GET", f"/v1/tenants/{self.tid}/connectors/crm").json()
        self.assertEqual((got["version"], got["kind"]), (2, "crm"))
        # the msp reaches its client's connectors; a foreign msp gets the 404 of a missing tenant
        self.assertEqual(self.call_api("GET", f"/v1/tenants/{self.tid}/connectors/crm", self.msp_tok).status, 200)
        missing = self.call_api("GET", f"/v1/tenants/{uuid.uuid4()}/connectors/crm", self.other_tok)
        foreign = self.call_api("GET", f"/v1/tenants/{self.tid}/connectors/crm", self.other_tok)
        self.assertEqual(foreign.status, 404)
        self.assertEqual(json.loads(foreign.body)["detail"], json.loads(missing.body)["detail"])
        self.assertEqual(self.call_api("GET", f"/v1/tenants/{self.tid}/connectors", self.user_tok).status, 403)
        # paging
        for i in range(3):
            self.assertEqual(self.put(f"page-{i}", {"base_url": self.base}).status, 201)
        names, cursor = [], None
        while True:
            q = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            page = self.call_api("GET", f"/v1/tenants/{self.tid}/connectors{q}").json()
            names += [c["name"] for c in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        self.assertEqual(names, sorted(names))
        self.assertTrue({"crm", "page-0", "page-1", "page-2"} <= set(names))
        self.assertEqual(self.call_api("DELETE", f"/v1/tenants/{self.tid}/connectors/page-1").status, 204)
        self.assertEqual(self.call_api("DELETE", f"/v1/tenants/{self.tid}/connectors/page-1").status, 404)
        self.assertEqual(self.call_api("GET", f"/v1/tenants/{self.tid}/connectors/page-1").status, 404)
        audit = self.p.pg.psql(f"SELECT action || ':' || target FROM platform.audit_events "
                               f"WHERE tenant_id = '{self.tid}' AND action LIKE 'connector.%' ORDER BY id")
        self.assertIn("connector.create:crm\nconnector.update:crm", audit)
        self.assertIn("connector.delete:page-1", audit)

    def test_validation_changes_nothing(self):
        bad = [
            ({"base_url": "file:///etc/passwd"}, "/base_url"),
            ({"base_url": "gopher://localhost:70/"}, "/base_url"),
            ({"base_url": "http://169.254.169.254/latest"}, "/base_url"),
            ({"base_url": "http://10.0.0.1/"}, "/base_url"),
            ({"base_url": "http://0x0a000001/"}, "/base_url"),
            ({"base_url": "http://user:pw@localhost/"}, "/base_url"),
            ({"base_url": self.base, "headers": {"Authorization": "Bearer x"}}, "/headers/Authorization"),
            ({"base_url": self.base, "headers": {"X-A": "a\r\nb"}}, "/headers/X-A"),
            ({"base_url": self.base, "timeout_ms": 5}, "/timeout_ms"),
            ({"base_url": self.base, "rate_limit": {"requests": 0, "per": "PT1S"}}, "/rate_limit/requests"),
            ({"base_url": self.base, "rate_limit": {"requests": 5, "per": "P1D"}}, "/rate_limit/per"),
            ({"base_url": self.base, "retry": {"max_attempts": 50}}, "/retry/max_attempts"),
            ({"base_url": self.base, "credential": "Bad Name"}, "/credential"),
            ({"base_url": self.base, "bogus": 1}, "/bogus"),
            ({"base_url": self.base, "kind": "salesforce"}, "/kind"),
        ]
        for body, path in bad:
            r = self.put("never", body)
            self.assertEqual(r.status, 400, (body, r.body))
            b = r.json()
            self.assertEqual(b["code"], "validation_failed")
            self.assertIn(path, [e["path"] for e in b["errors"]], (body, b))
        self.assertEqual(self.call_api("GET", f"/v1/tenants/{self.tid}/connectors/never").status, 404)
        self.assertEqual(self.put("Bad_Name", {"base_url": self.base}).status, 400)

    # ---- calls and auth kinds ----

    def test_each_auth_kind_reaches_the_peer(self):
        want = {
            "bearer-cred": ("Authorization", "Bearer " + SECRETS["bearer"]),
            "basic-cred": ("Authorization",
                           "Basic " + base64.b64encode(f"svc:{SECRETS['password']}".encode()).decode()),
            "key-cred": ("X-Psa-Key", SECRETS["apikey"]),
        }
        for cred, (header, value) in want.items():
            name = "auth-" + cred
            self.assertEqual(self.put(name, {"base_url": self.base, "credential": cred,
                                             "headers": {"X-Tenant-App": "mspflow-test"}}).status, 201)
            self.mock.clear()
            r = self.try_call(name, {"method": "POST", "path": "/echo?q=1", "body": {"deal": 42}})
            self.assertEqual(r.status, 200, r.body)
            s = r.json()
            self.assertEqual(s["status"], 200)
            seen = self.mock.seen("/echo")[-1]
            self.assertEqual(seen.header(header), value)
            self.assertEqual(seen.header("X-Tenant-App"), "mspflow-test")
            self.assertEqual(json.loads(seen.body), {"deal": 42})
            self.assertEqual(seen.method, "POST")
            self.assertEqual(seen.path, "/echo?q=1")
            # the summary shows the call without its secret, and hides sensitive fields of the answer
            self.assertEqual(s["request"]["headers"][header], "[redacted]")
            self.assertEqual(s["response"]["body"]["password"], "[redacted]")
            self.assertNotIn(value, r.body.decode())
        # no credential: nothing is added
        self.assertEqual(self.put("plain", {"base_url": self.base}).status, 201)
        self.mock.clear()
        self.assertEqual(self.try_call("plain").status, 200)
        self.assertIsNone(self.mock.seen("/echo")[-1].header("Authorization"))
        # a connector naming a missing credential fails clearly
        self.assertEqual(self.put("nocred", {"base_url": self.base, "credential": "nope"}).status, 201)
        r = self.try_call("nocred")
        self.assertEqual((r.status, r.json()["code"]), (409, "credential_missing"), r.body)

    def test_oauth2_one_token_for_100_concurrent_calls(self):
        self.assertEqual(self.put("psa", {"base_url": self.base, "credential": "oauth-cred"}).status, 201)
        before = len(self.tokens_issued)
        results = [None] * 100

        def one(i):
            results[i] = self.try_call("psa", {"method": "GET", "path": f"/api/tickets/{i}"})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [200] * 100, [r.body for r in results if r.status != 200][:3])
        self.assertEqual([r.json()["status"] for r in results], [200] * 100)
        self.assertEqual(len(self.tokens_issued) - before, 1, "one token fetch for all calls")
        # the peer revokes the token: the next call fetches a new one, once, and succeeds
        with self.token_lock:
            self.tokens_issued.append("revoked-" + uuid.uuid4().hex)
        r = self.try_call("psa", {"method": "GET", "path": "/api/tickets/x"})
        self.assertEqual((r.status, r.json()["status"]), (200, 200), r.body)
        self.assertEqual(len(self.tokens_issued) - before, 3)
        for r in results:
            self.assertNotIn(SECRETS["client_secret"], r.body.decode())
        # client authentication in the form body instead of HTTP Basic, with a scope
        self.assertEqual(self.put("psa-form", {"base_url": self.base, "credential": "oauth-body-cred"}).status, 201)
        r = self.try_call("psa-form", {"method": "GET", "path": "/api/tickets/y"})
        self.assertEqual((r.status, r.json()["status"]), (200, 200), r.body)
        self.assertEqual(len(self.tokens_issued) - before, 4)
        # the token endpoint's host must be allowed by the tenant's policy like any other
        self.cred("oauth-ip-cred", "oauth2_client_credentials", {
            "token_url": f"http://127.0.0.1:{self.mock.port}/oauth/token", "client_id": "psa-client",
            "client_secret": SECRETS["client_secret"]})
        self.assertEqual(self.put("psa-ip", {"base_url": self.base, "credential": "oauth-ip-cred"}).status, 201)
        n = len(self.mock.seen("/oauth/token"))
        r = self.try_call("psa-ip", {"method": "GET", "path": "/api/tickets/z"})
        self.assertEqual((r.status, r.json()["code"]), (422, "egress_refused"), r.body)
        self.assertIn("token endpoint", r.json()["detail"])
        self.assertEqual(len(self.mock.seen("/oauth/token")), n)
        # an unknown auth_method is refused when the credential is stored
        r = self.call_api("PUT", f"/v1/tenants/{self.tid}/credentials/bad-oauth", self.msp_tok,
                          {"type": "oauth2_client_credentials", "data": {
                              "token_url": f"{self.base}/t", "client_id": "c", "client_secret": "s3cret!!",
                              "auth_method": "post"}})
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("/data/auth_method", [e["path"] for e in r.json()["errors"]])

    # ---- the peer's limits, timeouts, sizes ----

    def test_retry_after_is_honoured(self):
        self.assertEqual(self.put("limited", {"base_url": self.base, "retry": {"max_attempts": 3}}).status, 201)
        self.mock.clear()
        t0 = time.monotonic()
        r = self.try_call("limited", {"method": "POST", "path": "/limited", "body": {}},
                          headers={"Idempotency-Key": "run-7:step-2"})
        self.assertEqual(r.status, 200, r.body)
        s = r.json()
        self.assertEqual((s["status"], s["attempts"]), (200, 2))
        seen = self.mock.seen("/limited")
        self.assertEqual(len(seen), 2)
        self.assertGreaterEqual(seen[1].at - seen[0].at, 1.95)
        self.assertGreaterEqual(time.monotonic() - t0, 1.95)
        # both attempts carry the caller's Idempotency-Key
        self.assertEqual([x.header("Idempotency-Key") for x in seen], ["run-7:step-2"] * 2)
        # a Retry-After beyond the call's budget is not waited out: 429 with the hint
        self.assertEqual(self.put("busy", {"base_url": self.base, "retry": {"max_attempts": 3, "max_wait": "PT5S"}}).status, 201)
        r = self.try_call("busy", {"method": "GET", "path": "/busy"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["status"], 503)
        self.assertEqual(r.headers.get("retry-after"), "120")
        # and the connector stays on hold: the next call does not reach the peer
        n = len(self.mock.seen("/busy"))
        r = self.try_call("busy", {"method": "GET", "path": "/busy"})
        self.assertEqual((r.status, r.json()["code"]), (429, "rate_limited"), r.body)
        self.assertEqual(len(self.mock.seen("/busy")), n)

    def test_timeout_and_oversized_response(self):
        self.assertEqual(self.put("slow", {"base_url": self.base, "timeout_ms": 500}).status, 201)
        t0 = time.monotonic()
        r = self.try_call("slow", {"method": "GET", "path": "/slow"})
        self.assertEqual((r.status, r.json()["code"]), (504, "timeout"), r.body)
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(self.call_api("GET", "/healthz").status, 200)
        self.assertEqual(self.put("big", {"base_url": self.base, "max_response_bytes": 65536}).status, 201)
        for path in ("/big", "/chunked-big"):
            r = self.try_call("big", {"method": "GET", "path": path})
            self.assertEqual((r.status, r.json()["code"]), (502, "too_large"), r.body)

    def test_outbound_rate_limit_is_held(self):
        self.assertEqual(self.put("metered", {"base_url": self.base,
                                              "rate_limit": {"requests": 4, "per": "PT1S"}}).status, 201)
        self.mock.clear()
        results = [None] * 12

        def one(i):
            results[i] = self.try_call("metered", {"method": "GET", "path": f"/echo?n={i}"})

        threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual([r.status for r in results], [200] * 12)
        # windows are whole seconds of the clock, counted when a call is
        # admitted: with 4 per window the 9th call cannot be admitted before
        # the third window starts, at least one second after the first call
        seen = sorted(x.at for x in self.mock.seen("/echo?n="))
        self.assertEqual(len(seen), 12)
        self.assertGreaterEqual(seen[8] - seen[0], 0.95, [round(t - seen[0], 3) for t in seen])

    # ---- egress ----

    def test_egress_refusals(self):
        # literal addresses and odd schemes never get stored
        for url in ("http://10.0.0.1/", "http://169.254.169.254/latest/meta-data", "http://0xa9fea9fe/",
                    "file:///etc/passwd", f"gopher://localhost:{self.mock.port}/", "ftp://localhost/"):
            r = self.put("bad-egress", {"base_url": url})
            self.assertEqual(r.status, 400, (url, r.body))
        # loopback is allowed as an address here (tests), but not as a host of the
        # tenant's policy: an IP literal is never in allow_hosts
        for url in (f"http://127.0.0.1:{self.mock.port}", f"http://[::1]:{self.mock.port}",
                    f"http://0x7f000001:{self.mock.port}", f"http://2130706433:{self.mock.port}"):
            r = self.put("ip-egress", {"base_url": url})
            if r.status == 400:
                continue
            self.assertIn(r.status, (200, 201), r.body)
            c = self.try_call("ip-egress")
            self.assertEqual((c.status, c.json()["code"]), (422, "egress_refused"), (url, c.body))
        # a host outside the policy
        self.assertEqual(self.put("elsewhere", {"base_url": "https://api.hubspot.com"}).status, 201)
        c = self.try_call("elsewhere")
        self.assertEqual((c.status, c.json()["code"]), (422, "egress_refused"), c.body)
        self.assertIn("allow_hosts", c.json()["detail"])
        # redirects: followed only when asked, each hop re-checked
        self.assertEqual(self.put("redir", {"base_url": self.base, "follow_redirects": 3,
                                            "credential": "bearer-cred"}).status, 201)
        self.mock.clear()
        r = self.try_call("redir", {"method": "GET", "path": "/to-echo"})
        self.assertEqual((r.status, r.json()["status"]), (200, 200), r.body)
        self.assertEqual(self.mock.seen("/echo")[-1].path, "/echo?from=redirect")
        n = len(self.mock.seen("/echo"))
        r = self.try_call("redir", {"method": "GET", "path": "/to-loopback"})
        self.assertEqual((r.status, r.json()["code"]), (422, "egress_refused"), r.body)
        self.assertEqual(len(self.mock.seen("/echo")), n, "the redirect target was never reached")
        self.assertEqual(self.put("noredir", {"base_url": self.base}).status, 201)
        r = self.try_call("noredir", {"method": "GET", "path": "/to-loopback"})
        self.assertEqual((r.status, r.json()["status"]), (200, 302), r.body)

    def test_address_guard_without_platform_allowance(self):
        # a second instance on the same database whose platform allows no
        # private address: the host is in the policy, its address is not
        s = self.p.add_server({"egress_allow": ""})
        try:
            self.assertEqual(self.put("guarded", {"base_url": self.base}).status, 201)
            self.mock.clear()
            r = api(s.port, "POST", f"/v1/tenants/{self.tid}/connectors/guarded/calls", self.client_tok,
                    {"method": "GET", "path": "/echo"})
            self.responses.append(r)
            self.assertEqual((r.status, r.json()["code"]), (422, "egress_refused"), r.body)
            self.assertIn("loopback", r.json()["detail"])
            self.assertEqual(self.mock.seen("/echo"), [])
            self.allow_private_reaches_loopback(s)
        finally:
            self.assertEqual(s.stop(), 0)
            self.p.servers.remove(s)
            self.__class__.extra_logs = getattr(self, "extra_logs", "") + s.output()

    def allow_private_reaches_loopback(self, s):
        # egress.allow_private granted from the platform down (msp and client
        # inherit it) lets the tenant's listed host resolve to loopback on the
        # instance whose platform allows no private address: the call and its
        # OAuth2 token request both get through
        path = f"/v1/tenants/{self.platform_id}/policy"
        r = api(self.p.port, "PUT", path, self.p.admin_token,
                {"egress": {"allow_hosts": ["localhost"], "allow_private": True}})
        self.assertEqual(r.status, 200, r.body)
        try:
            # new names: "guarded" is cached on s with the policy it was loaded with
            self.assertEqual(self.put("guarded-private", {"base_url": self.base}).status, 201)
            self.assertEqual(self.put("guarded-oauth", {"base_url": self.base, "credential": "oauth-cred"}).status,
                             201)
            self.mock.clear()
            r = api(s.port, "POST", f"/v1/tenants/{self.tid}/connectors/guarded-private/calls", self.client_tok,
                    {"method": "GET", "path": "/echo"})
            self.responses.append(r)
            self.assertEqual((r.status, r.json()["status"]), (200, 200), r.body)
            self.assertEqual(len(self.mock.seen("/echo")), 1)
            r = api(s.port, "POST", f"/v1/tenants/{self.tid}/connectors/guarded-oauth/calls", self.client_tok,
                    {"method": "GET", "path": "/api/private"})
            self.responses.append(r)
            self.assertEqual((r.status, r.json()["status"]), (200, 200), r.body)
            self.assertEqual(len(self.mock.seen("/oauth/token")), 1)
        finally:
            r = api(self.p.port, "PUT", path, self.p.admin_token, {"egress": {"allow_hosts": ["localhost"]}})
            self.assertEqual(r.status, 200, r.body)

    def test_shutdown_with_calls_in_flight(self):
        # calls still waiting on a peer when the grace period ends are ended
        # by the server ("shutting_down"); it exits cleanly (ASan: no leak)
        s = self.p.add_server({"shutdown_grace_ms": 300})
        self.assertEqual(self.put("slow-stop", {"base_url": self.base, "timeout_ms": 20000}).status, 201)
        results = []

        def one():
            try:
                results.append(api(s.port, "POST", f"/v1/tenants/{self.tid}/connectors/slow-stop/calls",
                                   self.client_tok, {"method": "GET", "path": "/slow"}))
            except OSError as e:  # the connection may close before an answer
                results.append(e)

        threads = [threading.Thread(target=one) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        self.assertEqual(s.stop(), 0)
        self.p.servers.remove(s)
        self.__class__.extra_logs = getattr(self, "extra_logs", "") + s.output()
        self.assertIn('"error":"shutting_down"', s.output())
        for t in threads:
            t.join(10)
        self.assertEqual(len(results), 3)
        for r in results:
            if not isinstance(r, OSError):
                self.assertIn(r.status, (200, 503), r.body)

    # ---- tracing ----

    def test_traceparent_and_idempotency_key(self):
        self.assertEqual(self.put("traced", {"base_url": self.base}).status, 201)
        self.mock.clear()
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        r = self.try_call("traced", headers={"traceparent": tp})
        self.assertEqual(r.status, 200, r.body)
        out = self.mock.seen("/echo")[-1].header("traceparent")
        parts = out.split("-")
        self.assertEqual((parts[0], parts[1], parts[3]), ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"))
        self.assertNotEqual(parts[2], "00f067aa0ba902b7")
        self.assertTrue(self.mock.seen("/echo")[-1].header("Idempotency-Key"))
        # without one, a new trace
        self.try_call("traced")
        self.assertNotIn("4bf92f3577b34da6a3ce929d0e0e4736", self.mock.seen("/echo")[-1].header("traceparent"))

    # ---- last: nothing secret anywhere ----

    def test_zz_no_secret_in_responses_or_logs(self):
        logs = "\n".join(s.output() for s in self.p.servers) + getattr(self, "extra_logs", "")
        bodies = "\n".join(r.body.decode("utf-8", "replace") + json.dumps(r.headers) for r in self.responses)
        for name, secret in SECRETS.items():
            self.assertNotIn(secret, logs, name)
            self.assertNotIn(secret, bodies, name)
        for t in self.tokens_issued:
            self.assertNotIn(t, logs)
            self.assertNotIn(t, bodies)
        self.assertGreater(len(self.responses), 50)


if __name__ == "__main__":
    unittest.main(verbosity=2)
