"""`mspflow seed-catalog` (docs/templates.md "Templates shipped with
mspflow"): the four shipped templates are published under the demo partner
it provisions, each version verifies with the partner's registered key
(canonical JSON + Ed25519, checked here with `cryptography`), a second run
publishes nothing and makes no key, an msp installs every template once it
has the connectors the template names, and a broken template directory
fails the command with each file's problems and publishes nothing.  And
two installed templates run against mock systems: a change request the
LLM classifies as standard and cheap is approved with a branded message,
a complete billing period becomes an invoice package, an incomplete one
sends a reminder and waits."""
import base64
import copy
import json
import os
import shutil
import subprocess
import time
import unittest
import uuid

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mfharness import BIN, _tmpdir, write_config
from mfengine import EngineEnv, RunReads
from mfidentity import Platform, api, wait_until
from mfmock import MockServer, Reply
from it_templates import canonical

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED_DIR = os.path.join(ROOT, "catalog", "templates")
SHIPPED = ["billing-readiness", "change-request-routing", "client-onboarding", "opportunity-to-project"]


def shipped(name):
    with open(os.path.join(SHIPPED_DIR, name + ".json")) as f:
        return json.load(f)


V = {n: shipped(n)["version"] for n in SHIPPED}   # the shipped versions


def next_minor(v):
    major, minor, _ = v.split(".")
    return f"{major}.{int(minor) + 1}.0"


NEWER = next_minor(V["client-onboarding"])   # a version the seed has not published


class CatalogSeedTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = p = Platform(config={"auth_ip_rate": 1000000, "auth_ip_burst": 1000000})
        cls.port = p.port
        cls.msp = p.create_tenant("msp", "seed-msp")
        cls.client = p.create_client(cls.msp["id"], "seed-c1")
        big = {"rate_limit": {"window": "PT1M", "tenant_requests": 1000000, "client_requests": 1000000}}
        for t in (p.admin["tenant_id"], cls.msp["id"]):
            r = api(cls.port, "PUT", f"/v1/tenants/{t}/policy", p.admin_token, big)
            assert r.status == 200, r.body
        time.sleep(1.2)   # cached plans expire (auth_cache_ttl_ms = 1000) before the limits are used
        cls.operator = p.token(cls.msp["id"], ["msp_operator"])
        cls.madmin = p.token(cls.msp["id"], ["msp_admin"])
        cfg_dir = _tmpdir("mspflow-cfg-")
        cls.cfg = os.path.join(cfg_dir, "seed.conf")
        write_config(cls.cfg, {"database_url": p.pg.conninfo})

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    # ---- helpers ----

    def seed(self, directory=None):
        argv = [BIN, "seed-catalog", "--config", self.cfg] + (["--dir", directory] if directory else [])
        return subprocess.run(argv, capture_output=True, text=True, timeout=120)

    def seed_ok(self, directory=None):
        r = self.seed(directory)
        self.assertEqual(r.returncode, 0, r.stderr)
        return [json.loads(l) for l in r.stdout.splitlines()]

    def sql(self, q):
        return self.p.pg.psql(q)

    def count(self, q):
        return int(self.sql(q))

    def partner_id(self):
        return self.sql("SELECT id FROM platform.tenants WHERE slug = 'demo-partner'")

    def counts(self):
        pid = self.partner_id()
        return (self.count(f"SELECT count(*) FROM platform.partner_signing_keys WHERE partner_id = '{pid}'"),
                self.count(f"SELECT count(*) FROM platform.templates WHERE partner_id = '{pid}'"),
                self.count("SELECT count(*) FROM platform.audit_events WHERE action IN "
                           "('signing_key.create', 'template.publish', 'tenant.create')"))

    def catalog(self):
        r = api(self.port, "GET", "/v1/catalog/templates?q=&limit=500", self.operator)
        self.assertEqual(r.status, 200, r.body)
        return {i["id"]: i for i in r.json()["items"] if i["partner"] == "demo-partner"}

    def version_doc(self, name, version=None):
        version = version or V[name]
        r = api(self.port, "GET", f"/v1/catalog/templates/demo-partner/{name}/versions/{version}", self.operator)
        self.assertEqual(r.status, 200, r.body)
        return r.json()["document"]

    def keys(self):
        rows = self.sql(f"SELECT id, encode(public_key, 'base64') FROM platform.partner_signing_keys "
                        f"WHERE partner_id = '{self.partner_id()}'")
        return dict(l.split("|") for l in rows.splitlines())

    def verify(self, doc):
        pub = Ed25519PublicKey.from_public_bytes(base64.b64decode(self.keys()[doc["key_id"]]))
        unsigned = dict(doc)
        sig = base64.b64decode(unsigned.pop("signature"))
        pub.verify(sig, canonical(unsigned))   # raises InvalidSignature

    def install(self, name, token=None):
        return api(self.port, "POST", f"/v1/tenants/{self.client['id']}/installations", token or self.operator,
                   {"template": f"demo-partner/{name}", "version": V[name], "workflow_name": name})

    # ---- tests, in order ----

    def test_1_seed_publishes_the_four_signed(self):
        self.assertEqual(self.sql("SELECT count(*) FROM platform.tenants WHERE slug = 'demo-partner'"), "0")
        lines = self.seed_ok()
        self.assertEqual([(l["template"], l["version"], l["state"]) for l in lines],
                         [(f"demo-partner/{n}", V[n], "published") for n in SHIPPED])
        self.assertEqual(len({l["key_id"] for l in lines}), 1, "one key signs the run")
        # the partner, provisioned like POST /v1/tenants: a partner under the platform, its schema migrated
        row = self.sql("SELECT kind, name, parent_id, schema_name FROM platform.tenants WHERE slug = 'demo-partner'")
        kind, name, parent, schema = row.split("|")
        self.assertEqual((kind, name, parent), ("partner", "Demo Delivery Partners", self.p.admin["tenant_id"]))
        self.assertRegex(schema, r"^t_[0-9a-f]{32}$")
        msp_schema = self.sql("SELECT schema_name FROM platform.tenants WHERE slug = 'seed-msp'")
        applied = "SELECT string_agg(version::text, ',' ORDER BY version) FROM {}.schema_migrations"
        self.assertEqual(self.sql(applied.format(schema)), self.sql(applied.format(msp_schema)))
        pid = self.partner_id()
        # the audit rows of the routes
        self.assertEqual(self.sql("SELECT action || ' ' || actor || ' ' || target FROM platform.audit_events "
                                  f"WHERE tenant_id = '{pid}' ORDER BY id"),
                         "\n".join([f"tenant.create seed-catalog {pid}",
                                    f"signing_key.create seed-catalog {lines[0]['key_id']}"] +
                                   [f"template.publish seed-catalog demo-partner/{n}" for n in SHIPPED]))
        self.assertEqual(self.counts()[:2], (1, 4))
        # the catalog lists them, and every version verifies with the registered key
        cat = self.catalog()
        self.assertEqual(sorted(cat), [f"demo-partner/{n}" for n in SHIPPED])
        for n in SHIPPED:
            item = cat[f"demo-partner/{n}"]
            want = shipped(n)
            self.assertEqual((item["latest_version"], item["description"], item["tags"], item["parameters"],
                              item["connectors"]),
                             (V[n], want["description"], want["tags"], want["parameters"], want["connectors"]))
            doc = self.version_doc(n)
            self.verify(doc)
            self.assertEqual(doc["key_id"], lines[0]["key_id"])
            self.assertEqual({k: v for k, v in doc.items() if k not in ("key_id", "signature")}, want)
            tampered = copy.deepcopy(doc)
            tampered["description"] += "!"
            with self.assertRaises(Exception):
                self.verify(tampered)
        # the registered key is an ordinary active signing key of the partner
        ptok = self.p.token(pid, ["partner_admin"])
        r = api(self.port, "GET", f"/v1/tenants/{pid}/signing-keys", ptok)
        self.assertEqual([(k["id"], k["state"]) for k in r.json()["items"]], [(lines[0]["key_id"], "active")])

    def test_2_second_seed_publishes_nothing(self):
        before = self.counts()
        lines = self.seed_ok()
        self.assertEqual([(l["template"], l["state"]) for l in lines],
                         [(f"demo-partner/{n}", "already_published") for n in SHIPPED])
        self.assertFalse(any("key_id" in l or "note" in l for l in lines), lines)
        self.assertEqual(self.counts(), before, "no key, no version, no audit row")

    def test_3_install_each_after_its_connectors(self):
        base = f"/v1/tenants/{self.client['id']}"
        names = set()
        for n in SHIPPED:
            want = sorted({c["name"] for c in shipped(n)["connectors"]})
            names.update(want)
            r = self.install(n)
            self.assertEqual(r.status, 409, r.body)
            self.assertEqual((r.json()["code"], r.json()["connectors"]), ("connector_missing", want), r.body)
        self.assertEqual(names, {"crm", "psa", "erp", "rmm", "llm"})
        self.assertEqual(api(self.port, "GET", base + "/installations", self.operator).json()["items"], [])
        for c in sorted(names):
            r = api(self.port, "PUT", f"{base}/connectors/{c}", self.madmin, {"base_url": f"https://{c}.example.com"})
            self.assertEqual(r.status, 201, r.body)
        for n in SHIPPED:
            r = self.install(n)
            self.assertEqual(r.status, 201, r.body)
            inst = r.json()
            want = shipped(n)
            defaults = {k: v["default"] for k, v in want["parameters"].items() if "default" in v}
            self.assertEqual((inst["template"], inst["workflow"], inst["workflow_version"], inst["params"]),
                             (f"demo-partner/{n}", n, 1, defaults))
            # the workflow version: the template's workflow with its params and messages
            r = api(self.port, "GET", f"{base}/workflows/{n}/versions/1", self.operator)
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json()["definition"], dict(want["workflow"], params=defaults, messages=want["messages"]))
        # a parameter value is checked against the shipped spec
        r = api(self.port, "POST", f"{base}/installations", self.operator,
                {"template": "demo-partner/change-request-routing", "version": V["change-request-routing"],
                 "params": {"cab_cost_threshold": -1, "currency": "usd"}, "workflow_name": "changes"})
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual([e["path"] for e in r.json()["errors"]], ["/params/cab_cost_threshold", "/params/currency"])

    def test_4_broken_directory_publishes_nothing(self):
        d = _tmpdir("mspflow-seed-")
        for n in SHIPPED:
            shutil.copy(os.path.join(SHIPPED_DIR, n + ".json"), d)
        # a valid new version, that must not be published alongside broken files
        newer = shipped("client-onboarding")
        newer["version"] = NEWER
        newer["parameters"]["kickoff_within_days"]["default"] = 5
        with open(os.path.join(d, "client-onboarding-newer.json"), "w") as f:
            json.dump(newer, f)
        # tampered: a step pointing nowhere, and a threshold that is not an integer
        broken = shipped("billing-readiness")
        broken["workflow"]["steps"][5]["next"] = "nowhere"
        with open(os.path.join(d, "billing-readiness.json"), "w") as f:
            json.dump(broken, f)
        floaty = shipped("change-request-routing")
        floaty["parameters"]["cab_cost_threshold"]["default"] = 2500.5
        with open(os.path.join(d, "change-request-routing.json"), "w") as f:
            json.dump(floaty, f)
        before = self.counts()
        r = self.seed(d)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn(f"{d}/billing-readiness.json: /workflow/steps/5/next: names no step", r.stderr)
        self.assertIn(f"{d}/change-request-routing.json: /parameters/cab_cost_threshold/default", r.stderr)
        self.assertIn("nothing was published", r.stderr)
        self.assertEqual(self.counts(), before)
        # fixed: only the new version is published, with a new key; an edited
        # file whose version was not bumped is reported, not published
        shutil.copy(os.path.join(SHIPPED_DIR, "billing-readiness.json"), d)
        edited = shipped("change-request-routing")
        edited["description"] += " Edited."
        with open(os.path.join(d, "change-request-routing.json"), "w") as f:
            json.dump(edited, f)
        lines = self.seed_ok(d)
        state = {(l["template"], l["version"]): l for l in lines}
        self.assertEqual(state[("demo-partner/client-onboarding", NEWER)]["state"], "published")
        self.assertEqual(sum(l["state"] == "published" for l in lines), 1, lines)
        self.assertIn("new version", state[("demo-partner/change-request-routing", V["change-request-routing"])]["note"])
        keys, versions, _ = self.counts()
        self.assertEqual((keys, versions), (before[0] + 1, before[1] + 1))
        doc = self.version_doc("client-onboarding", NEWER)
        self.verify(doc)
        self.assertEqual(doc["key_id"], state[("demo-partner/client-onboarding", NEWER)]["key_id"])
        self.assertEqual(self.catalog()["demo-partner/client-onboarding"]["latest_version"], NEWER)

    def test_5_usage(self):
        r = subprocess.run([BIN, "seed-catalog", "--config", self.cfg, "--bogus"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 2)
        r = subprocess.run([BIN, "help"], capture_output=True, text=True)
        self.assertIn("seed-catalog --config FILE [--dir DIR]", r.stdout)


class ShippedRunTest(RunReads, unittest.TestCase):
    """Installed shipped templates run end to end against mock PSA, ERP
    and LLM servers."""

    @classmethod
    def setUpClass(cls):
        cls.periods = {"P1": {"missing_entries": 0, "unapproved_entries": 0, "billable_hours": 120,
                              "people_missing": []},
                       "P2": {"missing_entries": 3, "unapproved_entries": 1, "billable_hours": 80,
                              "people_missing": [{"name": "Alex Kim", "missing": 3}]}}

        def psa(rec):
            parts = rec.path.split("?")[0].strip("/").split("/")
            if parts == ["tickets"] and rec.method == "POST":
                return Reply(201, {"id": "T-100"})
            if parts[0] == "tickets":
                return Reply(200, {"id": parts[1]})
            if parts[0] == "billing-periods" and parts[2] == "timesheets":
                return Reply(200, {"summary": cls.periods[parts[1]]})
            if parts[0] == "billing-periods" and parts[2] == "reminders":
                return Reply(201, {"reminders_sent": 1})
            return Reply(404, {"error": "no such route"})

        def llm(rec):
            answer = json.dumps({"label": "standard", "confidence": 0.97})
            return Reply(200, {"id": "c1", "object": "chat.completion", "model": "m",
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": answer}}]})

        cls.psa = MockServer({"/": psa})
        cls.erp = MockServer({"/invoice-packages": lambda rec: Reply(201, {"id": "INV-1", "total": 12345})})
        cls.llm = MockServer({"/v1/chat/completions": llm})
        cls.env = env = EngineEnv()
        p = env.p
        ai = {"enabled": True, "require_human_approval": False, "min_confidence": 0.8}
        for t, doc in ((p.admin["tenant_id"], {"egress": {"allow_hosts": ["localhost"]}, "ai": ai}),
                       (env.msp["id"], {"ai": ai})):
            r = api(env.port, "PUT", f"/v1/tenants/{t}/policy", p.admin_token, doc)
            assert r.status == 200, r.body
        r = env.call("PUT", "/branding", {"display_name": "Contoso IT", "support_email": "help@contoso.example"})
        assert r.status == 200, r.body
        r = env.call("PUT", "/credentials/llm-key", {"type": "bearer", "data": {"token": "sk-test-not-secret"}})
        assert r.status in (200, 201), r.body
        env.connector("psa", f"http://localhost:{cls.psa.port}")
        env.connector("erp", f"http://localhost:{cls.erp.port}")
        env.connector("llm", f"http://localhost:{cls.llm.port}/v1", credential="llm-key")
        cfg = os.path.join(_tmpdir("mspflow-cfg-"), "seed.conf")
        write_config(cfg, {"database_url": p.pg.conninfo})
        r = subprocess.run([BIN, "seed-catalog", "--config", cfg], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        for name in ("change-request-routing", "billing-readiness"):
            r = env.call("POST", "/installations", {"template": f"demo-partner/{name}", "version": V[name]})
            assert r.status == 201, r.body
        time.sleep(2.3)  # past the workers' cache of tenant facts (policies, branding)

    @classmethod
    def tearDownClass(cls):
        rcs = cls.env.close()
        for m in (cls.psa, cls.erp, cls.llm):
            m.close()
        assert rcs == [0], rcs

    def event(self, type_, data):
        r = self.env.call("POST", "/events", {"type": type_, "data": data},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(len(r.json()["run_ids"]), 1, r.body)
        return r.json()["run_ids"][0]

    def output(self, run, sid):
        rows = [x for x in run["steps"] if x["step"] == sid and x["state"] == "succeeded"]
        self.assertTrue(rows, f"{sid} succeeded: {json.dumps(run['steps'])[:2000]}")
        return rows[-1]["output"]

    def test_standard_change_is_approved_with_a_branded_message(self):
        rid = self.event("portal.request.change", {"request": {
            "id": "CR-7", "summary": "Add a VLAN for the guest Wi-Fi", "description": "One new SSID",
            "estimated_cost": 200, "company_id": "C-1",
            "requester": {"name": "Pat Doe", "email": "pat@client.example"}}})
        run = self.wait_state(rid, ("succeeded", "failed"))
        self.assertEqual(run["state"], "succeeded", run)
        self.assertEqual(self.output(run, "classify")["label"], "standard")
        text = self.output(run, "approved_text")["text"]
        self.assertIn('"Add a VLAN for the guest Wi-Fi" was approved as a standard change', text.replace("&quot;", '"'))
        self.assertIn("Contoso IT", text)
        self.assertIn("help@contoso.example", text)
        self.assertIn("T-100", text)
        sent = [q.json() for q in self.psa.seen("/tickets/T-100") if q.method == "PATCH"]
        self.assertEqual(sent[0], {"change_type": "standard", "classification_confidence": 0.97})
        self.assertEqual((sent[-1]["status"], sent[-1]["reply_to_requester"]), ("approved", text))
        ticket = [q.json() for q in self.psa.seen("/tickets") if q.method == "POST"][0]
        self.assertEqual((ticket["estimated_cost"], ticket["external_ref"]), (200, "portal-CR-7"))

    def test_billing_period_complete_and_incomplete(self):
        rid = self.event("psa.billing_period.closed", {"period": {"id": "P1", "name": "November", "company_id": "C-1"}})
        run = self.wait_state(rid, ("succeeded", "failed"))
        self.assertEqual(run["state"], "succeeded", run)
        pkg = self.erp.seen("/invoice-packages")[0].json()
        self.assertEqual((pkg["period_id"], pkg["layout"], pkg["include_expenses"], pkg["billable_hours"]),
                         ("P1", "detailed", True, 120))
        text = self.output(run, "ready_text")["text"]
        self.assertIn("package INV-1, 120 billable hours, total 12345", text)
        self.assertIn("expenses included", text)
        self.assertNotIn("still incomplete", text)
        # incomplete: a reminder naming who misses what, then a day's wait
        rid = self.event("psa.billing_period.closed", {"period": {"id": "P2", "name": "December", "company_id": "C-1"}})
        run = self.wait_state(rid, ("waiting", "failed"))
        self.assertEqual(run["state"], "waiting", run)
        self.assertEqual(self.output(run, "completeness"), {"missing": 3, "unapproved": 1, "complete": False})
        reminder = [q.json() for q in self.psa.seen("/billing-periods/P2/reminders")]
        self.assertEqual(len(reminder), 1)
        self.assertIn("3 timesheet entries are still missing, 1 still waiting for approval.", reminder[0]["body"])
        self.assertIn("- Alex Kim: 3 entries", reminder[0]["body"])
        self.assertEqual(self.erp.seen("/invoice-packages")[1:], [])
        self.assertEqual(self.env.call("POST", f"/runs/{rid}/cancel").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
