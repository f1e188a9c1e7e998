"""Tenant policy documents over HTTP: validated on write with every problem
and its JSON Pointer, nothing stored on a bad write, versions and an audit
row (with the previous document) per change, and the effective policy: msp
defaults inherited by its clients, the msp's limits capping theirs."""
import json
import time
import unittest

from mfidentity import Platform, api


class PolicyTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform()
        cls.msp = cls.p.create_tenant("msp", "pol-msp")
        cls.client = cls.p.create_client(cls.msp["id"], "pol-client")
        cls.msp_tok = cls.p.token(cls.msp["id"])
        cls.client_tok = cls.p.token(cls.client["id"])

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    def put(self, tid, doc, tok=None):
        return api(self.p.port, "PUT", f"/v1/tenants/{tid}/policy", tok or self.p.admin_token, doc)

    def get(self, tid, tok=None):
        r = api(self.p.port, "GET", f"/v1/tenants/{tid}/policy", tok or self.p.admin_token)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def test_validation_reports_every_problem(self):
        before = self.get(self.client["id"])
        r = self.put(self.client["id"], {"rate_limit": {"window": "1 minute", "tenant_requests": -5},
                                         "egress": {"allow_hosts": ["ok.example", "http://bad"]},
                                         "ai": {"bogus": True}})
        self.assertEqual(r.status, 400, r.body)
        b = r.json()
        self.assertEqual(b["code"], "validation_failed")
        paths = sorted(e["path"] for e in b["errors"])
        for want in ("/rate_limit/window", "/rate_limit/tenant_requests", "/egress/allow_hosts/1", "/ai/bogus"):
            self.assertIn(want, paths)
        self.assertEqual(self.get(self.client["id"]), before)
        r = api(self.p.port, "PUT", f"/v1/tenants/{self.client['id']}/policy", self.p.admin_token, [1, 2])
        self.assertEqual(r.status, 400)

    def test_inheritance_caps_and_audit(self):
        r = self.put(self.msp["id"], {"rate_limit": {"window": "PT1M", "tenant_requests": 600, "client_requests": 100},
                                      "ai": {"enabled": False}}, self.msp_tok)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["version"], 1)
        # the client asks for more than its msp allows: the msp's limits win
        r = self.put(self.client["id"], {"rate_limit": {"window": "PT1M", "tenant_requests": 5000},
                                         "ai": {"enabled": True}}, self.client_tok)
        self.assertEqual(r.status, 200, r.body)
        pol = r.json()
        self.assertEqual(pol["document"]["rate_limit"]["tenant_requests"], 5000)
        self.assertEqual(pol["effective"]["rate_limit"]["tenant_requests"], 600)
        self.assertEqual(pol["effective"]["rate_limit"]["client_requests"], 100)
        self.assertFalse(pol["effective"]["ai"]["enabled"])
        # and the gateway applies the effective plan, on every worker once
        # their cached plan has expired (auth_cache_ttl_ms = 1000)
        time.sleep(1.1)
        r = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/access", self.client_tok)
        self.assertEqual(r.headers["ratelimit-limit"], "100")   # the tighter: the API client's
        r = self.put(self.client["id"], {"retention": {"runs": "P30D"}}, self.client_tok)
        self.assertEqual(r.json()["version"], 2)
        rows = self.p.pg.psql(f"SELECT detail::text FROM platform.audit_events WHERE tenant_id = "
                              f"'{self.client['id']}' AND action = 'policy.update' ORDER BY id").splitlines()
        self.assertEqual(len(rows), 2)
        last = json.loads(rows[-1])
        self.assertEqual(last["before"]["rate_limit"]["tenant_requests"], 5000)
        self.assertEqual(last["after"], {"retention": {"runs": "P30D"}})
        actor = self.p.pg.psql(f"SELECT actor FROM platform.audit_events WHERE tenant_id = '{self.client['id']}' "
                               f"AND action = 'policy.update' ORDER BY id DESC LIMIT 1")
        self.assertTrue(actor.startswith("s:"))

    def test_who_may_touch_the_policy(self):
        user_tok = self.p.token(self.client["id"], ["client_user"])
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/policy", user_tok).status, 403)
        self.assertEqual(self.put(self.client["id"], {}, user_tok).status, 403)
        self.assertEqual(self.put(self.msp["id"], {}, self.client_tok).status, 404)


if __name__ == "__main__":
    unittest.main(verbosity=2)
