"""The white-label client portal: two clients of one msp (Contoso and
Fabrikam) with verified portal domains; the portal found by Host and by the
/portal/v1/c/{slug} path form; branding under the msp's brand; CORS only for
the portal's own domains; security headers and no product name in any
portal answer; sign-in and its throttling; a request that starts the
workflow bound to portal.request.change, its approval decided in the portal,
and the status; isolation by id, Host and path; a suspended client's portal
gone; domain claims (409 for another tenant's, DNS verification refused
without the TXT record, confirmation by the msp only)."""
import base64
import json
import time
import unittest

from mfengine import EngineEnv
from mfidentity import api, wait_until
from mfharness import request

PW = "correct horse battery"
CHANGE_FLOW = {
    "trigger": {"event": "portal.request.change"},
    "steps": [
        {"id": "ask", "type": "approval", "assignee_role": "change_approver", "sla": "PT4H",
         "on_timeout": "reject", "title": "Approve change: {{ data.request.summary }}"},
        {"id": "internal", "type": "transform", "output": {"note": "'internal-connector-detail-xyz'"}},
    ],
}

# A type with a form, split over two workflows (a form is the union of its
# workflows' fields), and milestones on the steps the client may follow.
ACCESS_FLOW = {
    "trigger": {"event": "portal.request.access"},
    "request": {"title": "Access request", "description": "Ask for access to a system.",
                "fields": [
                    {"name": "system", "type": "string", "required": True, "title": "System"},
                    {"name": "level", "type": "string", "enum": ["read", "write"], "default": "read"},
                    {"name": "days", "type": "integer", "minimum": 1, "maximum": 90, "default": 30},
                ]},
    "steps": [
        {"id": "log", "type": "transform", "milestone": "Request logged", "output": {"ok": "true"}},
        {"id": "ask", "type": "approval", "assignee_role": "change_approver", "sla": "PT4H",
         "on_timeout": "reject", "title": "Grant {{ data.request.level }} access to {{ data.request.system }}?"},
        {"id": "grant", "type": "transform", "milestone": "Access granted", "output": {"ok": "true"}},
    ],
}
ACCESS_AUDIT_FLOW = {
    "trigger": {"event": "portal.request.access"},
    "request": {"title": "Ignored: the first form gives the title",
                "fields": [
                    {"name": "system", "type": "integer"},
                    {"name": "justification", "type": "string", "required": True, "title": "Why"},
                ]},
    "steps": [{"id": "record", "type": "transform", "milestone": "Recorded for audit", "output": {"ok": "true"}}],
}


def portal(port, method, path, host=None, token=None, body=None, headers=None):
    h = dict(headers or {})
    if host:
        h["Host"] = host
    if token:
        h["Authorization"] = "Bearer " + token
    return request(port, method, path, body=body, headers=h)


class PortalTest(unittest.TestCase):
    seen = []  # every portal answer, for the product-name check

    @classmethod
    def setUpClass(cls):
        cls.env = EngineEnv(config={"auth_fail_per_min": 5})
        cls.p, cls.port, cls.msp, cls.msp_tok = cls.env.p, cls.env.port, cls.env.msp, cls.env.msp_tok
        cls.contoso = cls.p.create_client(cls.msp["id"], "contoso")
        cls.fabrikam = cls.p.create_client(cls.msp["id"], "fabrikam")
        r = api(cls.port, "PUT", f"/v1/tenants/{cls.msp['id']}/branding", cls.msp_tok,
                {"display_name": "Blue MSP", "support_email": "help@blue.example", "primary_color": "#0033cc",
                 "domains": ["www.blue.example"]})
        assert r.status == 200, r.body
        r = api(cls.port, "PUT", f"/v1/tenants/{cls.contoso['id']}/branding", cls.msp_tok,
                {"display_name": "Contoso Service Desk"})
        assert r.status == 200, r.body
        for c, d in ((cls.contoso, "portal.contoso.example"), (cls.fabrikam, "portal.fabrikam.example")):
            r = api(cls.port, "POST", f"/v1/tenants/{c['id']}/domains", cls.msp_tok, {"domain": d})
            assert r.status == 201, r.body
            r = api(cls.port, "POST", f"/v1/tenants/{c['id']}/domains/{d}/confirm", cls.msp_tok)
            assert r.status == 200, r.body
            r = api(cls.port, "PUT", f"/v1/tenants/{c['id']}/workflows/portal-change", cls.msp_tok, CHANGE_FLOW)
            assert r.status in (200, 201), r.body
        for name, flow in (("access", ACCESS_FLOW), ("access-audit", ACCESS_AUDIT_FLOW)):
            r = api(cls.port, "PUT", f"/v1/tenants/{cls.contoso['id']}/workflows/{name}", cls.msp_tok, flow)
            assert r.status in (200, 201), r.body
        cls.ann = cls.user(cls.contoso, "ann@contoso.example", ["client_user", "change_approver"])
        cls.cat = cls.user(cls.contoso, "cat@contoso.example", ["client_admin"])
        cls.bob = cls.user(cls.fabrikam, "bob@fabrikam.example", ["client_user", "change_approver"])
        cls.ann_tok = cls.login("portal.contoso.example", "ann@contoso.example")
        cls.cat_tok = cls.login("portal.contoso.example", "cat@contoso.example")
        cls.bob_tok = cls.login("portal.fabrikam.example", "bob@fabrikam.example")

    @classmethod
    def tearDownClass(cls):
        assert cls.env.close() == [0]

    @classmethod
    def user(cls, client, email, roles):
        r = api(cls.port, "POST", f"/v1/tenants/{client['id']}/users", cls.msp_tok,
                {"email": email, "password": PW, "roles": roles})
        assert r.status == 201, r.body
        return r.json()

    @classmethod
    def login(cls, host, email, pw=PW, path="/portal/v1/login"):
        r = portal(cls.port, "POST", path, host, body={"email": email, "password": pw})
        assert r.status == 200, r.body
        return r.json()["access_token"]

    def call(self, method, path, host="portal.contoso.example", token=None, body=None, headers=None):
        r = portal(self.port, method, path, host, token, body, headers)
        PortalTest.seen.append(r)
        return r

    # ---- resolution and branding ----

    def test_branding_by_host_and_by_path(self):
        r = self.call("GET", "/portal/v1/branding")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json(), {"display_name": "Contoso Service Desk", "support_email": "help@blue.example",
                                    "primary_color": "#0033cc"})
        r = self.call("GET", "/portal/v1/branding", "portal.fabrikam.example:8443")
        self.assertEqual(r.json()["display_name"], "Blue MSP")
        r = self.call("GET", "/portal/v1/c/contoso/branding", "127.0.0.1")
        self.assertEqual(r.json()["display_name"], "Contoso Service Desk")
        # another client's path on a portal's host, an unknown host, an unknown slug
        self.assertEqual(self.call("GET", "/portal/v1/c/contoso/branding", "portal.fabrikam.example").status, 404)
        self.assertEqual(self.call("GET", "/portal/v1/branding", "nowhere.example").status, 404)
        self.assertEqual(self.call("GET", "/portal/v1/c/nobody/branding", "127.0.0.1").status, 404)
        # the msp is no portal, not even by slug
        self.assertEqual(self.call("GET", "/portal/v1/c/eng-msp/branding", "127.0.0.1").status, 404)

    def test_unverified_domain_is_no_portal(self):
        r = api(self.port, "POST", f"/v1/tenants/{self.contoso['id']}/domains", self.msp_tok,
                {"domain": "pending.contoso.example"})
        self.assertEqual(r.status, 201, r.body)
        self.assertFalse(r.json()["verified"])
        self.assertTrue(r.json()["verification"]["value"].startswith("portal-verification="))
        self.assertEqual(self.call("GET", "/portal/v1/branding", "pending.contoso.example").status, 404)

    # ---- headers ----

    def test_security_headers_cors_and_no_server_header(self):
        r = self.call("GET", "/portal/v1/branding", headers={"Origin": "https://portal.contoso.example"})
        self.assertEqual(r.headers.get("access-control-allow-origin"), "https://portal.contoso.example")
        for h, v in (("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"),
                     ("referrer-policy", "no-referrer"), ("cache-control", "no-store")):
            self.assertEqual(r.headers.get(h), v, h)
        self.assertIn("frame-ancestors 'none'", r.headers.get("content-security-policy", ""))
        self.assertNotIn("server", r.headers)
        # another client's domain and a stranger get no CORS
        r = self.call("GET", "/portal/v1/branding", headers={"Origin": "https://portal.fabrikam.example"})
        self.assertEqual(r.status, 200)
        self.assertNotIn("access-control-allow-origin", r.headers)
        r = self.call("OPTIONS", "/portal/v1/requests", headers={
            "Origin": "https://portal.contoso.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 204, r.body)
        self.assertNotIn("content-length", r.headers)   # RFC 9110 8.6: never on a 204
        self.assertIn("POST", r.headers.get("access-control-allow-methods", ""))
        self.assertIn("Authorization", r.headers.get("access-control-allow-headers", ""))
        r = self.call("OPTIONS", "/portal/v1/requests", headers={
            "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
        self.assertEqual(r.status, 403)
        self.assertNotIn("access-control-allow-origin", r.headers)
        # errors carry the security headers too
        r = self.call("GET", "/portal/v1/requests")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")

    def test_zz_no_product_name_in_any_portal_answer(self):
        self.assertGreater(len(PortalTest.seen), 20)
        for r in PortalTest.seen:
            self.assertNotIn("server", r.headers)
            text = (json.dumps(r.headers) + r.body.decode("utf-8", "replace")).lower()
            self.assertNotIn("mspflow", text, r.body)
            try:
                tok = r.json().get("access_token") if r.body.startswith(b"{") else None
            except ValueError:
                tok = None
            if tok:
                for part in tok.split(".")[:2]:
                    raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)).lower()
                    self.assertNotIn(b"mspflow", raw)

    # ---- sign-in ----

    def test_login_by_host_and_path_and_throttling(self):
        r = self.call("POST", "/portal/v1/login", body={"email": "ann@contoso.example", "password": PW})
        self.assertEqual(r.status, 200, r.body)
        r = self.call("POST", "/portal/v1/c/contoso/login", "127.0.0.1",
                      body={"email": "ann@contoso.example", "password": PW})
        self.assertEqual(r.status, 200, r.body)
        # Contoso's user cannot sign in at Fabrikam's portal, by Host or by path
        r = self.call("POST", "/portal/v1/login", "portal.fabrikam.example",
                      body={"email": "ann@contoso.example", "password": PW})
        self.assertEqual(r.status, 401, r.body)
        r = self.call("POST", "/portal/v1/c/fabrikam/login", "127.0.0.1",
                      body={"email": "ann@contoso.example", "password": PW})
        self.assertEqual(r.status, 401, r.body)
        self.user(self.contoso, "dan@contoso.example", ["client_user"])
        bad = [self.call("POST", "/portal/v1/login", body={"email": "dan@contoso.example",
                                                           "password": "not the password"}).status
               for _ in range(7)]
        self.assertEqual(bad[:5], [401] * 5)
        self.assertEqual(bad[-1], 429)
        r = self.call("POST", "/portal/v1/login", body={"email": "dan@contoso.example", "password": PW})
        self.assertEqual(r.status, 429)
        self.assertGreaterEqual(int(r.headers["retry-after"]), 1)

    # ---- requests, tasks, decisions, status ----

    def wait_request(self, rid, states, token=None):
        found = {}

        def check():
            r = self.call("GET", f"/portal/v1/requests/{rid}", token=token or self.ann_tok)
            found["r"] = r
            return r.status == 200 and r.json()["state"] in states
        self.assertTrue(wait_until(check, timeout=20), found["r"].body)
        return found["r"].json()

    def test_request_approval_and_status(self):
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok,
                      body={"type": "change", "fields": {"summary": "Add a guest VLAN", "estimated_cost": 200}})
        self.assertEqual(r.status, 201, r.body)
        req = r.json()
        self.assertEqual((req["type"], req["fields"]["summary"]), ("change", "Add a guest VLAN"))
        self.assertEqual(set(req), {"id", "type", "fields", "state", "created_at", "approvals", "milestones"})
        self.assertEqual(req["milestones"], [])
        req = self.wait_request(req["id"], ("awaiting_approval",))
        self.assertEqual(req["approvals"][0]["title"], "Approve change: Add a guest VLAN")
        # the event reached the workflow with the request's id and requester
        data = json.loads(self.env.psql(
            f"SELECT data::text FROM {self.env.tenant_schema(self.contoso['id'])}.events "
            f"WHERE type = 'portal.request.change' AND data -> 'request' ->> 'id' = '{req['id']}'"))
        self.assertEqual(data["request"]["id"], req["id"])
        self.assertEqual(data["request"]["requester"]["email"], "ann@contoso.example")
        tasks = [t for t in self.call("GET", "/portal/v1/tasks?state=open", token=self.ann_tok).json()["items"]
                 if t["request_id"] == req["id"]]
        self.assertEqual(len(tasks), 1)
        task = tasks[0]
        self.assertEqual(task["request_id"], req["id"])
        self.assertNotIn("run_id", task)
        # the client admin holds no change_approver role: no task for her
        self.assertEqual(self.call("GET", "/portal/v1/tasks", token=self.cat_tok).json()["items"], [])
        r = self.call("POST", f"/portal/v1/tasks/{task['id']}/decision", token=self.cat_tok,
                      body={"decision": "approve"})
        self.assertEqual(r.status, 403, r.body)
        r = self.call("POST", f"/portal/v1/tasks/{task['id']}/decision", token=self.ann_tok,
                      body={"decision": "approve", "comment": "go"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["state"], "approved")
        self.assertNotIn("run_id", r.json())
        r = self.call("POST", f"/portal/v1/tasks/{task['id']}/decision", token=self.ann_tok,
                      body={"decision": "approve"})
        self.assertEqual(r.status, 409)
        req = self.wait_request(req["id"], ("completed",))
        # the admin sees every request of the client; the status adds up
        items = self.call("GET", "/portal/v1/requests", token=self.cat_tok).json()["items"]
        self.assertIn(req["id"], [i["id"] for i in items])
        st = self.call("GET", "/portal/v1/status", token=self.ann_tok)
        self.assertEqual(st.status, 200, st.body)
        st = st.json()
        self.assertGreaterEqual(st["requests"]["completed"], 1)
        self.assertEqual(st["sla"], "on_track")
        self.assertEqual(set(st), {"requests", "open_requests", "approvals", "sla", "recent_milestones"})
        # nothing of the run's inside leaks
        for r in PortalTest.seen:
            self.assertNotIn(b"internal-connector-detail-xyz", r.body)
            self.assertNotIn(b"portal-change", r.body)
        # a type no workflow takes, a bad type, reserved fields
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok, body={"type": "teleport", "fields": {}})
        self.assertEqual((r.status, r.json()["code"]), (422, "unknown_request_type"))
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok, body={"type": "Change!"})
        self.assertEqual(r.status, 400)
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok,
                      body={"type": "change", "fields": {"requester": "someone else"}})
        self.assertEqual(r.status, 400)
        PortalTest.contoso_request, PortalTest.contoso_task = req["id"], task["id"]

    def test_requests_of_a_user_are_their_own(self):
        r = self.call("POST", "/portal/v1/c/contoso/requests", "127.0.0.1", self.ann_tok,
                      {"type": "change", "fields": {"summary": "by path"}})
        self.assertEqual(r.status, 201, r.body)
        dan = self.user(self.contoso, "eve@contoso.example", ["client_user"])
        self.assertTrue(dan["id"])
        eve_tok = self.login("portal.contoso.example", "eve@contoso.example")
        self.assertEqual(self.call("GET", "/portal/v1/requests", token=eve_tok).json()["items"], [])
        self.assertEqual(self.call("GET", f"/portal/v1/requests/{r.json()['id']}", token=eve_tok).status, 404)

    # ---- forms, idempotency, milestones ----

    def count_requests(self):
        return int(self.env.psql(f"SELECT count(*) FROM {self.env.tenant_schema(self.contoso['id'])}.portal_requests"))

    def decide_open(self, rid, decision):
        """ann decides the open task of request rid (once it is there)."""
        self.wait_request(rid, ("awaiting_approval",), token=self.cat_tok)  # the admin sees every request
        task = [t for t in self.call("GET", "/portal/v1/tasks?state=open", token=self.ann_tok).json()["items"]
                if t["request_id"] == rid][0]
        r = self.call("POST", f"/portal/v1/tasks/{task['id']}/decision", token=self.ann_tok,
                      body={"decision": decision})
        self.assertEqual(r.status, 200, r.body)

    def test_request_types_and_forms(self):
        r = self.call("GET", "/portal/v1/request-types", token=self.ann_tok)
        self.assertEqual(r.status, 200, r.body)
        types = {t["type"]: t for t in r.json()["items"]}
        self.assertEqual(sorted(types), ["access", "change"])
        self.assertEqual((types["change"]["title"], types["change"]["fields"]), ("change", []))
        acc = types["access"]
        self.assertEqual((acc["title"], acc["description"]), ("Access request", "Ask for access to a system."))
        # the union of both workflows' forms, in order; the first one's "system" wins
        self.assertEqual([f["name"] for f in acc["fields"]], ["system", "level", "days", "justification"])
        self.assertEqual(acc["fields"][0], {"name": "system", "type": "string", "required": True, "title": "System"})
        # Fabrikam's portal has no access type; path form answers the same
        r = self.call("GET", "/portal/v1/request-types", "portal.fabrikam.example", self.bob_tok)
        self.assertEqual([t["type"] for t in r.json()["items"]], ["change"])
        r = self.call("GET", "/portal/v1/c/contoso/request-types", "127.0.0.1", self.ann_tok)
        self.assertEqual(sorted(t["type"] for t in r.json()["items"]), ["access", "change"])
        self.assertEqual(self.call("GET", "/portal/v1/request-types").status, 401)
        # bad fields: every problem at its path, nothing stored
        before = self.count_requests()
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok, body={"type": "access", "fields": {
            "system": 5, "level": "root", "days": 0, "extra": 1}})
        self.assertEqual((r.status, r.json()["code"]), (400, "validation_failed"), r.body)
        self.assertEqual(sorted(e["path"] for e in r.json()["errors"]),
                         ["/fields/days", "/fields/extra", "/fields/justification", "/fields/level", "/fields/system"])
        self.assertEqual(self.count_requests(), before)
        # a workflow's form is checked when it is stored
        bad = dict(ACCESS_FLOW, request={"title": "x", "fields": [{"name": "id", "type": "string"},
                                                                  {"name": "n", "type": "integer", "minimum": "1"}]})
        r = api(self.port, "PUT", f"/v1/tenants/{self.contoso['id']}/workflows/bad-form", self.msp_tok, bad)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual([e["path"] for e in r.json()["errors"]],
                         ["/request/fields/0/name", "/request/fields/1/minimum"])
        bad = dict(CHANGE_FLOW, trigger={"event": "crm.deal.won"}, request={"title": "x", "fields": []})
        r = api(self.port, "PUT", f"/v1/tenants/{self.contoso['id']}/workflows/bad-form", self.msp_tok, bad)
        self.assertEqual([e["path"] for e in r.json()["errors"]], ["/request"])

    def test_idempotent_request_and_milestones(self):
        before = self.count_requests()
        body = {"type": "access", "fields": {"system": "erp", "justification": "month end"}}
        key = {"Idempotency-Key": "form-7f3a"}
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok, body=body, headers=key)
        self.assertEqual(r.status, 201, r.body)
        req = r.json()
        # the stored fields carry the form's defaults
        self.assertEqual(req["fields"], {"system": "erp", "justification": "month end", "level": "read", "days": 30})
        again = self.call("POST", "/portal/v1/requests", token=self.ann_tok, body=body, headers=key)
        self.assertEqual(again.status, 200, again.body)
        self.assertEqual(again.json()["id"], req["id"])
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok,
                      body={"type": "access", "fields": {"system": "crm", "justification": "x"}}, headers=key)
        self.assertEqual((r.status, r.json()["code"]), (422, "idempotency_key_reused"))
        self.assertEqual(self.count_requests(), before + 1)
        schema = self.env.tenant_schema(self.contoso["id"])
        self.assertEqual(self.env.psql(f"SELECT count(*) FROM {schema}.runs r JOIN {schema}.portal_requests q "
                                       f"ON r.id = ANY (q.run_ids) WHERE q.id = '{req['id']}'"), "2")
        # the key is the caller's: another user's same key is a new request
        self.user(self.contoso, "fay@contoso.example", ["client_user"])
        fay = self.login("portal.contoso.example", "fay@contoso.example")
        r = self.call("POST", "/portal/v1/requests", token=fay, body=body, headers=key)
        self.assertEqual(r.status, 201, r.body)
        self.assertNotEqual(r.json()["id"], req["id"])
        self.decide_open(r.json()["id"], "reject")
        self.assertEqual(self.call("POST", "/portal/v1/requests", token=fay, body=body,
                                   headers={"Idempotency-Key": "\u00e9"}).status, 400)

        def stones(q):
            return {m["title"]: m["state"] for m in q["milestones"]}
        q = self.wait_request(req["id"], ("awaiting_approval",))
        self.assertEqual(stones(q), {"Request logged": "reached", "Access granted": "pending",
                                     "Recorded for audit": "reached"})
        self.decide_open(req["id"], "approve")
        q = self.wait_request(req["id"], ("completed",))
        self.assertEqual(stones(q), {"Request logged": "reached", "Access granted": "reached",
                                     "Recorded for audit": "reached"})
        self.assertTrue(all(m["reached_at"] for m in q["milestones"]))
        st = self.call("GET", "/portal/v1/status", token=self.ann_tok).json()
        recent = [(m["title"], m["request_id"], m["request_type"]) for m in st["recent_milestones"]]
        self.assertEqual(recent[0], ("Access granted", req["id"], "access"))
        # a rejected one: the milestone after the approval is skipped
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok,
                      body={"type": "access", "fields": {"system": "hr", "justification": "curious"}})
        rid = r.json()["id"]
        self.decide_open(rid, "reject")
        q = self.wait_request(rid, ("rejected",))
        self.assertEqual(stones(q)["Access granted"], "skipped")
        self.assertIsNone([m for m in q["milestones"] if m["title"] == "Access granted"][0]["reached_at"])

    def test_gateway_refusals_under_the_portal_carry_its_headers(self):
        for m, path in (("GET", "/portal/v1/nothing-here"), ("DELETE", "/portal/v1/branding"),
                        ("GET", "/portal/v1/c/contoso/requests/a/b/c")):
            r = self.call(m, path)
            self.assertIn(r.status, (404, 405), (m, path, r.body))
            self.assertEqual(r.headers.get("x-content-type-options"), "nosniff", path)
            self.assertIn("frame-ancestors 'none'", r.headers.get("content-security-policy", ""), path)
            self.assertNotIn("server", r.headers)
        # the admin API keeps its own headers
        r = request(self.port, "GET", "/v1/nothing-here")
        self.assertEqual(r.status, 404)
        self.assertNotIn("frame-ancestors", r.headers.get("content-security-policy", ""))

    # ---- isolation ----

    def test_isolation_by_id_host_and_path(self):
        r = self.call("POST", "/portal/v1/requests", token=self.ann_tok,
                      body={"type": "change", "fields": {"summary": "Contoso only"}})
        self.assertEqual(r.status, 201, r.body)
        rid = r.json()["id"]
        req = self.wait_request(rid, ("awaiting_approval",))
        tasks = [t for t in self.call("GET", "/portal/v1/tasks?state=open", token=self.ann_tok).json()["items"]
                 if t["request_id"] == rid]
        tid = tasks[0]["id"]
        fab = "portal.fabrikam.example"
        # Fabrikam's user: at its own portal, by id
        self.assertEqual(self.call("GET", f"/portal/v1/requests/{rid}", fab, self.bob_tok).status, 404)
        r = self.call("POST", f"/portal/v1/tasks/{tid}/decision", fab, self.bob_tok, {"decision": "approve"})
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(self.call("GET", "/portal/v1/requests", fab, self.bob_tok).json()["items"], [])
        self.assertEqual(self.call("GET", "/portal/v1/tasks", fab, self.bob_tok).json()["items"], [])
        # at Contoso's portal, by Host and by path
        for path in ("/portal/v1/requests", f"/portal/v1/requests/{rid}", "/portal/v1/tasks", "/portal/v1/status"):
            self.assertEqual(self.call("GET", path, "portal.contoso.example", self.bob_tok).status, 404, path)
            cpath = path.replace("/portal/v1", "/portal/v1/c/contoso")
            self.assertEqual(self.call("GET", cpath, "127.0.0.1", self.bob_tok).status, 404, cpath)
        r = self.call("POST", f"/portal/v1/c/contoso/tasks/{tid}/decision", "127.0.0.1", self.bob_tok,
                      {"decision": "approve"})
        self.assertEqual(r.status, 404)
        # Contoso's token at Fabrikam's portal
        self.assertEqual(self.call("GET", "/portal/v1/requests", fab, self.ann_tok).status, 404)
        self.assertEqual(self.call("GET", "/portal/v1/c/fabrikam/tasks", "127.0.0.1", self.ann_tok).status, 404)
        # the msp's own token is no portal user
        self.assertEqual(self.call("GET", "/portal/v1/requests", token=self.msp_tok).status, 404)
        # the task is still open for Contoso
        r = self.call("POST", f"/portal/v1/tasks/{tid}/decision", token=self.ann_tok, body={"decision": "reject"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(req["id"], rid)

    # ---- suspension ----

    def test_suspended_client_has_no_portal(self):
        t = self.p.create_client(self.msp["id"], "tailspin")
        d = "portal.tailspin.example"
        self.assertEqual(api(self.port, "POST", f"/v1/tenants/{t['id']}/domains", self.msp_tok,
                             {"domain": d}).status, 201)
        self.assertEqual(api(self.port, "POST", f"/v1/tenants/{t['id']}/domains/{d}/confirm",
                             self.msp_tok).status, 200)
        self.user(t, "tia@tailspin.example", ["client_user"])
        tok = self.login(d, "tia@tailspin.example")
        self.assertEqual(self.call("GET", "/portal/v1/requests", d, tok).status, 200)
        r = api(self.port, "POST", f"/v1/tenants/{t['id']}/suspend", self.msp_tok)
        self.assertEqual(r.status, 200, r.body)
        calls = [("GET", "/portal/v1/branding", None), ("POST", "/portal/v1/login",
                 {"email": "tia@tailspin.example", "password": PW}), ("GET", "/portal/v1/requests", None),
                 ("POST", "/portal/v1/requests", {"type": "change"}), ("GET", "/portal/v1/tasks", None),
                 ("GET", "/portal/v1/status", None),
                 ("POST", "/portal/v1/tasks/00000000-0000-4000-8000-000000000000/decision", {"decision": "approve"})]
        for m, path, body in calls:
            for host, p in ((d, path), ("127.0.0.1", path.replace("/portal/v1", "/portal/v1/c/tailspin"))):
                r = self.call(m, p, host, tok, body)
                self.assertIn(r.status, (403, 404), (m, p, r.status, r.body))

    # ---- domain claims ----

    def test_domain_claims(self):
        cid, fid = self.contoso["id"], self.fabrikam["id"]
        r = api(self.port, "POST", f"/v1/tenants/{fid}/domains", self.msp_tok, {"domain": "portal.contoso.example"})
        self.assertEqual((r.status, r.json()["code"]), (409, "domain_taken"))
        r = api(self.port, "POST", f"/v1/tenants/{cid}/domains", self.msp_tok, {"domain": "portal.contoso.example"})
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(r.json()["verified"])
        r = api(self.port, "POST", f"/v1/tenants/{cid}/domains", self.msp_tok, {"domain": "Not A Domain"})
        self.assertEqual(r.status, 400)
        admin = self.p.token(cid, ["client_admin"])
        r = api(self.port, "POST", f"/v1/tenants/{cid}/domains", admin, {"domain": "help.contoso.example"})
        self.assertEqual(r.status, 201, r.body)
        # the client's own admin cannot vouch for it; without the TXT record DNS says no
        r = api(self.port, "POST", f"/v1/tenants/{cid}/domains/help.contoso.example/confirm", admin)
        self.assertEqual(r.status, 403, r.body)
        r = api(self.port, "POST", f"/v1/tenants/{cid}/domains/help.contoso.example/verify", admin)
        self.assertEqual((r.status, r.json()["code"]), (409, "domain_not_verified"), r.body)
        items = api(self.port, "GET", f"/v1/tenants/{cid}/domains", admin).json()["items"]
        self.assertIn("portal.contoso.example", [i["domain"] for i in items])
        # another msp's admin does not even see the collection
        other = self.p.create_tenant("msp", "portal-other-msp")
        otok = self.p.token(other["id"])
        self.assertEqual(api(self.port, "GET", f"/v1/tenants/{cid}/domains", otok).status, 404)
        r = api(self.port, "DELETE", f"/v1/tenants/{cid}/domains/help.contoso.example", admin)
        self.assertEqual(r.status, 204, r.body)
        rows = self.env.psql(f"SELECT action FROM platform.audit_events WHERE tenant_id = '{cid}' "
                             f"AND action LIKE 'domain.%' ORDER BY id").split()
        self.assertIn("domain.verify", rows)
        self.assertIn("domain.delete", rows)


if __name__ == "__main__":
    unittest.main(verbosity=2)
