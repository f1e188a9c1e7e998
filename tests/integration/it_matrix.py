"""The authorization matrix: a platform admin, a partner, two msps with two
clients each; every tenant-scoped route called with every role's token
against every tenant.  The expected outcome of each cell comes from the
rules of CONTRACT section 4 written out again here, independently of
policies/authz.c: only allowed cells succeed, tenants outside reach answer
exactly like a missing one (404), inside reach without permission 403."""
import itertools
import json
import unittest
import uuid

from mfidentity import Platform, api

WORKFLOW = {"trigger": {"event": "mx.nothing.happened"},
            "steps": [{"id": "noop", "type": "transform", "output": {"ok": "true"}}]}

ADMIN_ROLE = {"platform": "platform_admin", "partner": "partner_admin", "msp": "msp_admin",
              "client": "client_admin"}


def reach(who, t):
    return (who["kind"] == "platform" and "platform_admin" in who["roles"]) or who["tid"] == t["id"] or \
        (who["kind"] == "msp" and t["parent_id"] == who["tid"])


def admin_over(who, t):
    if who["kind"] == "platform" and "platform_admin" in who["roles"]:
        return True
    if who["tid"] == t["id"]:
        return ADMIN_ROLE[t["kind"]] in who["roles"]
    return who["kind"] == "msp" and t["parent_id"] == who["tid"] and "msp_admin" in who["roles"]


def expected(who, t, perm):
    """'allow', 404 or 403."""
    if perm.startswith("check:"):
        # GET .../access/{perm}: reach is the guard's (404 outside); the
        # answer is 204 when the permission holds, else 403
        if not reach(who, t):
            return 404
        return "allow" if expected(who, t, perm[6:]) == "allow" else 403
    if not reach(who, t):
        return 404
    pa = who["kind"] == "platform" and "platform_admin" in who["roles"]
    if perm == "read":
        return "allow"
    if perm in ("edit", "api_clients", "policy", "audit"):
        return "allow" if admin_over(who, t) else 403
    if perm == "create_client":
        if t["kind"] != "msp":
            return 404
        return "allow" if pa or (who["tid"] == t["id"] and "msp_admin" in who["roles"]) else 403
    if perm == "list_clients":
        return "allow" if t["kind"] == "msp" else 404
    if perm == "lifecycle":
        ok = t["kind"] != "platform" and who["tid"] != t["id"] and \
            (pa or (who["kind"] == "msp" and t["parent_id"] == who["tid"] and "msp_admin" in who["roles"]))
        return "allow" if ok else 403
    if perm == "users":
        return "allow" if t["kind"] in ("msp", "client") and admin_over(who, t) else 403
    if perm in ("credentials", "connectors"):
        if t["kind"] not in ("msp", "client"):
            return 404
        return "allow" if admin_over(who, t) else 403
    if perm in ("engine_read", "workflows", "runs"):
        # only msps and clients run workflows
        if t["kind"] not in ("msp", "client"):
            return 404
        if perm == "engine_read":
            return "allow"
        # operators: whoever administers T, and an msp's operators on the msp and its clients
        ok = admin_over(who, t) or (who["kind"] == "msp" and "msp_operator" in who["roles"] and
                                    (who["tid"] == t["id"] or t["parent_id"] == who["tid"]))
        # a client's own users also start runs and send events
        ok = ok or (perm == "runs" and who["tid"] == t["id"] and "client_user" in who["roles"])
        return "allow" if ok else 403
    if perm == "templates":
        # partners only; their own partner_admin only
        if t["kind"] != "partner":
            return 404
        return "allow" if who["tid"] == t["id"] and "partner_admin" in who["roles"] else 403
    if perm == "catalog":
        # read as one's own tenant with a built-in role of a platform, partner or msp
        builtin = {"platform": ("platform_admin",), "partner": ("partner_admin",),
                   "msp": ("msp_admin", "msp_operator")}.get(t["kind"], ())
        ok = who["tid"] == t["id"] and any(r in who["roles"] for r in builtin)
        return "allow" if ok else 403
    raise ValueError(perm)


class MatrixTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform(config={"auth_ip_rate": 100000, "auth_ip_burst": 100000})
        p = cls.p
        platform_id = p.admin["tenant_id"]
        cls.t = {"platform": {"id": platform_id, "kind": "platform", "parent_id": None}}
        cls.t["partner"] = p.create_tenant("partner", "mx-partner")
        for m in ("m1", "m2"):
            cls.t[m] = p.create_tenant("msp", f"mx-{m}")
            for c in ("a", "b"):
                cls.t[m + c] = p.create_client(cls.t[m]["id"], f"mx-{m}{c}")
        # tokens: (label, tenant label, roles)
        specs = [("platform_admin", "platform", ["platform_admin"]),
                 ("partner_admin", "partner", ["partner_admin"]),
                 ("msp_admin", "m1", ["msp_admin"]), ("msp_operator", "m1", ["msp_operator"]),
                 ("client_admin", "m1a", ["client_admin"]), ("client_user", "m1a", ["client_user"]),
                 ("approver", "m1a", ["finance_approver"])]
        cls.who = {}
        for label, tl, roles in specs:
            tok = p.admin_token if label == "platform_admin" else p.token(cls.t[tl]["id"], roles)
            cls.who[label] = {"tok": tok, "tid": cls.t[tl]["id"], "kind": cls.t[tl]["kind"], "roles": roles}
        # one API client per tenant for the GET-one column
        cls.apic = {k: p.api_client(v["id"])["client_id"] for k, v in cls.t.items()}
        cls.seq = itertools.count()

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    def routes(self, tl):
        t = self.t[tl]["id"]
        n = next(self.seq)
        return [
            ("GET", f"/v1/tenants/{t}", None, "read", 200),
            ("PATCH", f"/v1/tenants/{t}", {"name": self.t[tl].get("name", "Platform")}, "edit", 200),
            ("GET", f"/v1/tenants/{t}/clients", None, "list_clients", 200),
            ("POST", f"/v1/tenants/{t}/clients", {"name": "N", "slug": f"mx-new-{n}"}, "create_client", 201),
            ("POST", f"/v1/tenants/{t}/resume", None, "lifecycle", 200),
            ("GET", f"/v1/tenants/{t}/api-clients", None, "api_clients", 200),
            ("POST", f"/v1/tenants/{t}/api-clients", {"name": "m"}, "api_clients", 201),
            ("GET", f"/v1/tenants/{t}/api-clients/{self.apic[tl]}", None, "api_clients", 200),
            ("DELETE", f"/v1/tenants/{t}/api-clients/{uuid.uuid4()}", None, "api_clients", 404),
            ("GET", f"/v1/tenants/{t}/users", None, "users", 200),
            ("POST", f"/v1/tenants/{t}/users", {"email": f"u{n}@mx.example", "password": "twelve chars!!"},
             "users", 201),
            ("GET", f"/v1/tenants/{t}/users/{uuid.uuid4()}", None, "users", 404),
            ("GET", f"/v1/tenants/{t}/policy", None, "policy", 200),
            ("PUT", f"/v1/tenants/{t}/policy", {}, "policy", 200),
            ("GET", f"/v1/tenants/{t}/audit", None, "audit", 200),
            ("GET", f"/v1/tenants/{t}/access", None, "read", 200),
            ("GET", f"/v1/tenants/{t}/credentials", None, "credentials", 200),
            ("GET", f"/v1/tenants/{t}/credentials/none", None, "credentials", 404),
            ("GET", f"/v1/tenants/{t}/connectors", None, "connectors", 200),
            ("DELETE", f"/v1/tenants/{t}/connectors/none", None, "connectors", 404),
            ("GET", f"/v1/tenants/{t}/workflows", None, "engine_read", 200),
            ("PUT", f"/v1/tenants/{t}/workflows/mx-wf-{n}", WORKFLOW, "workflows", 201),
            ("GET", f"/v1/tenants/{t}/runs", None, "engine_read", 200),
            ("GET", f"/v1/tenants/{t}/runs/{uuid.uuid4()}", None, "engine_read", 404),
            ("POST", f"/v1/tenants/{t}/runs/{uuid.uuid4()}/cancel", None, "runs", 404),
            ("POST", f"/v1/tenants/{t}/events", {"type": "mx.nothing.happened"}, "runs", 202),
            ("GET", f"/v1/tenants/{t}/tasks", None, "engine_read", 200),
            ("POST", f"/v1/tenants/{t}/tasks/{uuid.uuid4()}/decision", {"decision": "approve"}, "engine_read",
             404),
            ("GET", f"/v1/tenants/{t}/signing-keys", None, "templates", 200),
            ("POST", f"/v1/tenants/{t}/templates", {}, "templates", 400),
            ("POST", f"/v1/tenants/{t}/signing-keys/{uuid.uuid4()}/revoke", None, "templates", 404),
        ] + [("GET", f"/v1/tenants/{t}/access/{perm}", None, "check:" + perm, 204)
             for perm in ("read", "edit", "create_client", "lifecycle", "api_clients", "users", "policy",
                          "credentials", "connectors", "workflows", "runs", "templates", "catalog", "audit")]

    def test_matrix(self):
        missing = self.p.admin_token  # noqa: reference for the 404 body shape below
        ref = api(self.p.port, "GET", f"/v1/tenants/{uuid.uuid4()}", missing).json()
        cells = wrong = 0
        failures = []
        for wl, who in self.who.items():
            for tl, t in self.t.items():
                for method, path, body, perm, ok_status in self.routes(tl):
                    want = expected(who, t, perm)
                    r = api(self.p.port, method, path, who["tok"], body)
                    cells += 1
                    got = r.status
                    good = (got == ok_status) if want == "allow" else (got == want)
                    if want == 404 and got == 404 and perm != "list_clients" and "/api-clients/" not in path \
                            and "/users/" not in path:
                        # outside reach looks exactly like a missing tenant
                        b = r.json()
                        good = good and (b["code"], b["detail"], b["title"]) == \
                            (ref["code"], ref["detail"], ref["title"])
                    if not good:
                        wrong += 1
                        failures.append(f"{wl} {method} {path.replace(t['id'], tl)} -> {got} want {want} "
                                        f"{r.body[:120]!r}")
        self.assertEqual(failures, [], f"{wrong} of {cells} cells wrong")
        self.assertGreater(cells, 7 * 8 * 20)

    def test_platform_only_creates_msps_and_partners(self):
        for wl, who in self.who.items():
            r = api(self.p.port, "POST", "/v1/tenants", who["tok"],
                    {"kind": "msp", "name": "X", "slug": f"mx-top-{wl.replace('_', '-')}"})
            self.assertEqual(r.status, 201 if wl == "platform_admin" else 403, (wl, r.body))
        r = api(self.p.port, "GET", f"/v1/tenants/{self.t['m1']['id']}/access/bogus", self.p.admin_token)
        self.assertEqual((r.status, r.json()["code"]), (404, "not_found"))
        r = api(self.p.port, "POST", "/v1/tenants", self.p.admin_token, {"kind": "client", "name": "X", "slug": "mx-c"})
        self.assertEqual((r.status, r.json()["errors"][0]["path"]), (400, "/kind"))

    def test_catalog_read(self):
        # no {tenant_id}: read as the caller's own tenant
        for wl, who in self.who.items():
            t = next(v for v in self.t.values() if v["id"] == who["tid"])
            want = expected(who, t, "catalog")
            r = api(self.p.port, "GET", "/v1/catalog/templates", who["tok"])
            self.assertEqual(r.status, 200 if want == "allow" else want, (wl, r.body))

    def test_delete(self):
        # refusals across the matrix first (nothing is deleted by them)
        for wl, who in self.who.items():
            for tl, t in self.t.items():
                want = expected(who, t, "lifecycle")
                if want == "allow":
                    continue
                r = api(self.p.port, "DELETE", f"/v1/tenants/{t['id']}", who["tok"])
                self.assertEqual(r.status, want, (wl, tl, r.body))
        # the allowed ones
        m2 = self.t["m2"]["id"]
        r = api(self.p.port, "DELETE", f"/v1/tenants/{m2}", self.who["platform_admin"]["tok"])
        self.assertEqual((r.status, r.json()["code"]), (409, "tenant_has_clients"))
        c = self.p.create_client(self.t["m1"]["id"], "mx-doomed")
        tok = self.p.token(c["id"])
        schema = self.p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{c['id']}'")
        self.assertTrue(schema.startswith("t_"))
        r = api(self.p.port, "DELETE", f"/v1/tenants/{c['id']}", self.who["msp_admin"]["tok"])
        self.assertEqual(r.status, 204, r.body)
        self.assertEqual(self.p.pg.psql(f"SELECT count(*) FROM pg_namespace WHERE nspname = '{schema}'"), "0")
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{c['id']}", self.p.admin_token).status, 404)
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{c['id']}", tok).status, 401)
        # its slug is free again
        self.p.create_client(self.t["m1"]["id"], "mx-doomed")


if __name__ == "__main__":
    unittest.main(verbosity=2)
