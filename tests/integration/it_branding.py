"""Tenant branding over HTTP: an msp's branding inherited by its clients,
a client's own fields overriding it, every validation problem reported with
its JSON Pointer and nothing stored, a domain held by one tenant only (409
domain_taken), the guard's refusals (403 inside reach, 404 outside), an
audit row per change, and the message preview: brand fields HTML-escaped by
{{ }}, raw by {{{ }}}, a broken template a 400 with its byte offset."""
import json
import unittest

from mfidentity import Platform, api


class BrandingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform()
        cls.msp = cls.p.create_tenant("msp", "brand-msp")
        cls.other = cls.p.create_tenant("msp", "brand-other")
        cls.client = cls.p.create_client(cls.msp["id"], "brand-client")
        cls.msp_tok = cls.p.token(cls.msp["id"])
        cls.other_tok = cls.p.token(cls.other["id"])
        cls.client_tok = cls.p.token(cls.client["id"])
        cls.user_tok = cls.p.token(cls.client["id"], ["client_user"])

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    def put(self, tid, doc, tok=None):
        return api(self.p.port, "PUT", f"/v1/tenants/{tid}/branding", tok or self.p.admin_token, doc)

    def get(self, tid, tok=None):
        r = api(self.p.port, "GET", f"/v1/tenants/{tid}/branding", tok or self.p.admin_token)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def render(self, tid, body, tok=None):
        return api(self.p.port, "POST", f"/v1/tenants/{tid}/render", tok or self.p.admin_token, body)

    def test_1_inheritance_override_and_audit(self):
        r = self.put(self.msp["id"], {"display_name": "Blue MSP", "primary_color": "#0033cc",
                                      "support_email": "help@blue.example", "domains": ["portal.blue.example"]},
                     self.msp_tok)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["tenant_id"], self.msp["id"])
        self.assertEqual(r.json()["effective"]["display_name"], "Blue MSP")
        b = self.get(self.client["id"], self.client_tok)
        self.assertEqual(b["document"], {})
        self.assertEqual(b["effective"]["display_name"], "Blue MSP")
        self.assertEqual(b["effective"]["primary_color"], "#0033cc")
        r = self.put(self.client["id"], {"display_name": "Acme Portal", "logo_url": "https://acme.example/logo.png"},
                     self.client_tok)
        self.assertEqual(r.status, 200, r.body)
        b = self.get(self.client["id"], self.user_tok)
        self.assertEqual(b["document"], {"display_name": "Acme Portal", "logo_url": "https://acme.example/logo.png"})
        self.assertEqual(b["effective"]["display_name"], "Acme Portal")
        self.assertEqual(b["effective"]["support_email"], "help@blue.example")
        self.assertEqual(b["effective"]["logo_url"], "https://acme.example/logo.png")
        # the msp's own view is unchanged; the tenant resource shows the same document
        self.assertEqual(self.get(self.msp["id"])["effective"]["display_name"], "Blue MSP")
        t = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}", self.client_tok).json()
        self.assertEqual(t["branding"], b["document"])
        rows = self.p.pg.psql(f"SELECT detail::text FROM platform.audit_events WHERE tenant_id = "
                              f"'{self.client['id']}' AND action = 'branding.put'").splitlines()
        self.assertEqual(len(rows), 1)
        self.assertEqual(json.loads(rows[0])["after"]["display_name"], "Acme Portal")

    def test_2_validation(self):
        before = self.get(self.client["id"])
        r = self.put(self.client["id"], {"display_name": "", "logo_url": "http://x.example/l.png",
                                         "primary_color": "blue", "support_email": "not an address",
                                         "domains": ["Upper.example", "ok.example", "ok.example"], "bogus": 1})
        self.assertEqual(r.status, 400, r.body)
        b = r.json()
        self.assertEqual(b["code"], "validation_failed")
        self.assertTrue(r.headers.get("content-type", "").startswith("application/problem+json"), r.headers)
        paths = sorted(e["path"] for e in b["errors"])
        self.assertEqual(paths, sorted(["/display_name", "/logo_url", "/primary_color", "/support_email",
                                        "/domains/0", "/domains/2", "/bogus"]))
        for bad in ({"display_name": "x" * 101}, {"logo_url": "https://" + "a" * 2041 + ".example"},
                    {"domains": [f"d{i}.example" for i in range(21)]}, {"domains": "a.example"},
                    {"support_email": "a@" + "b" * 250 + ".example"}, {"primary_color": "#12345g"}, [1]):
            r = self.put(self.client["id"], bad)
            self.assertEqual(r.status, 400, (bad, r.body))
        self.assertEqual(self.get(self.client["id"]), before)

    def test_3_domain_taken(self):
        r = self.put(self.other["id"], {"domains": ["portal.other.example", "portal.blue.example"]}, self.other_tok)
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(r.json()["code"], "domain_taken")
        self.assertIn("portal.blue.example", r.json()["detail"])
        self.assertEqual(self.get(self.other["id"])["document"], {})
        r = self.put(self.other["id"], {"domains": ["portal.other.example"]}, self.other_tok)
        self.assertEqual(r.status, 200, r.body)
        # re-putting one's own domains is not a conflict
        r = self.put(self.other["id"], {"domains": ["portal.other.example"], "display_name": "Other"}, self.other_tok)
        self.assertEqual(r.status, 200, r.body)
        # the tenant routes that also write branding claim domains the same way
        r = api(self.p.port, "PATCH", f"/v1/tenants/{self.client['id']}", self.p.admin_token,
                {"branding": {"domains": ["portal.other.example"]}})
        self.assertEqual((r.status, r.json()["code"]), (409, "domain_taken"), r.body)
        r = api(self.p.port, "POST", "/v1/tenants", self.p.admin_token,
                {"kind": "msp", "name": "Dup", "slug": "brand-dup", "branding": {"domains": ["portal.blue.example"]}})
        self.assertEqual((r.status, r.json()["code"]), (409, "domain_taken"), r.body)
        r = api(self.p.port, "PATCH", f"/v1/tenants/{self.other['id']}", self.p.admin_token,
                {"branding": {"domains": ["portal.other.example", "www.other.example"]}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.get(self.other["id"])["document"]["domains"], ["portal.other.example", "www.other.example"])

    def test_4_permissions(self):
        r = self.put(self.client["id"], {"display_name": "Nope"}, self.user_tok)
        self.assertEqual(r.status, 403, r.body)
        r = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/branding", self.other_tok)
        self.assertEqual(r.status, 404, r.body)
        r = self.put(self.client["id"], {"display_name": "Nope"}, self.other_tok)
        self.assertEqual(r.status, 404, r.body)
        r = self.render(self.client["id"], {"template": "x"}, self.other_tok)
        self.assertEqual(r.status, 404, r.body)
        r = api(self.p.port, "GET", f"/v1/tenants/{self.msp['id']}/branding", self.client_tok)
        self.assertEqual(r.status, 404, r.body)
        r = api(self.p.port, "GET", f"/v1/tenants/{self.client['id']}/branding")
        self.assertEqual(r.status, 401, r.body)

    def test_5_render(self):
        r = self.put(self.client["id"], {"display_name": "<script>alert('x')</script> & Co"}, self.client_tok)
        self.assertEqual(r.status, 200, r.body)
        r = self.render(self.client["id"], {
            "template": "Hi {{ name }} from {{ brand.display_name }} ({{tenant.slug}}, {{ brand.support_email }})"
                        "|{{{brand.display_name}}}|{{#items}}[{{.}}]{{/items}}{{^none}}none{{/none}}{{! hidden }}",
            "context": {"name": "<b>Ann</b>", "items": ["a", "<b>"], "none": []}}, self.user_tok)
        self.assertEqual(r.status, 200, r.body)
        out = r.json()["output"]
        self.assertEqual(out, "Hi &lt;b&gt;Ann&lt;/b&gt; from &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; Co "
                              "(brand-client, help@blue.example)|<script>alert('x')</script> & Co|[a][&lt;b&gt;]none")
        r = self.render(self.client["id"], {"template": "ok {{#items}}x"})
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json()["code"], "invalid_template")
        self.assertEqual(r.json()["offset"], 3)
        self.assertIn("byte 3", r.json()["detail"])
        r = self.render(self.client["id"], {"template": "{{#a}}{{/b}}"})
        self.assertEqual((r.status, r.json()["offset"]), (400, 6))
        r = self.render(self.client["id"], {"template": "{{ a b }}"})
        self.assertEqual((r.status, r.json()["code"]), (400, "invalid_template"))
        for bad in ({"template": 1}, {"template": "x", "context": []}, {"template": "x", "context": {"brand": {}}},
                    {"template": "x", "extra": 1}, {}):
            self.assertEqual(self.render(self.client["id"], bad).status, 400, bad)
        r = self.render(self.client["id"], {"template": "x" * (64 * 1024 + 1)})
        self.assertEqual((r.status, r.json()["code"]), (400, "template_too_large"), r.body[:300])


if __name__ == "__main__":
    unittest.main(verbosity=2)
