"""Template installations (CONTRACT 8, docs/templates.md "Installing"): a
partner publishes signed templates; an msp operator installs them into a
client.  Refusals that store nothing (bad body, bad params at their exact
paths, unknown / yanked versions, missing connectors), the workflow
version carrying the validated params, a run started by an event reading
`params`, and an upgrade while a run waits on an approval: that run ends on
its version, new runs take the new one."""
import time
import unittest
import uuid

from mfengine import RunReads
from mfidentity import Platform, api
from it_templates import Signer

PROBLEM = "application/problem+json"

NOTE_WORKFLOW = {
    "trigger": {"event": "inst.note.requested", "when": "data.amount > params.threshold"},
    "steps": [{"id": "note", "type": "transform",
               "output": {"url": "params.url", "tier": "params.tier", "amount": "data.amount"}}],
}

NOTE_PARAMS = {
    "threshold": {"type": "integer", "minimum": 1, "maximum": 1000, "required": True},
    "tier": {"type": "string", "enum": ["basic", "pro"], "default": "basic"},
    "url": {"type": "string", "pattern": "^https://", "default": "https://crm.example.com"},
}


def approval_workflow(marker):
    return {
        "trigger": {"event": "inst.approval.requested"},
        "steps": [
            {"id": "ask", "type": "approval", "assignee_role": "finance_approver", "sla": "PT1H",
             "on_timeout": "reject", "title": "Approve {{ input.what }} for {{ params.who }}?"},
            {"id": "after", "type": "transform", "output": {"marker": marker, "who": "params.who"}},
        ],
    }


def template(name, version, workflow, parameters, connectors):
    return {"name": name, "version": version, "description": "an installable template", "tags": ["test"],
            "parameters": parameters, "workflow": workflow, "connectors": connectors}


class InstallationsTest(RunReads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = p = Platform(config={"auth_ip_rate": 1000000, "auth_ip_burst": 1000000, "engine_poll_ms": 200})
        cls.port = p.port
        cls.partner = p.create_tenant("partner", "inst-partner")
        cls.msp = p.create_tenant("msp", "inst-msp")
        cls.client = p.create_client(cls.msp["id"], "inst-c1")
        big = {"rate_limit": {"window": "PT1M", "tenant_requests": 1000000, "client_requests": 1000000}}
        for t in (p.admin["tenant_id"], cls.msp["id"]):
            r = api(cls.port, "PUT", f"/v1/tenants/{t}/policy", p.admin_token, big)
            assert r.status == 200, r.body
        cls.ptok = p.token(cls.partner["id"], ["partner_admin"])
        cls.operator = p.token(cls.msp["id"], ["msp_operator"])
        cls.madmin = p.token(cls.msp["id"], ["msp_admin"])   # connectors need an admin
        cls.c_user = p.token(cls.client["id"], ["client_user"])
        cls.approver = p.token(cls.client["id"], ["client_user", "finance_approver"])
        cls.signer = Signer()
        r = api(cls.port, "POST", f"/v1/tenants/{cls.partner['id']}/signing-keys", cls.ptok,
                {"public_key": cls.signer.public})
        assert r.status == 201, r.body
        cls.signer.id = r.json()["id"]
        crm = [{"name": "crm", "kind": "http"}]
        for doc in (template("deal-note", "1.0.0", NOTE_WORKFLOW, NOTE_PARAMS, crm),
                    template("deal-note", "0.9.0", NOTE_WORKFLOW, NOTE_PARAMS, crm),
                    template("approve", "1.0.0", approval_workflow("1"),
                             {"who": {"type": "string", "default": "finance"}}, []),
                    template("approve", "2.0.0", approval_workflow("2"),
                             {"who": {"type": "string", "default": "finance"}}, [])):
            r = api(cls.port, "POST", f"/v1/tenants/{cls.partner['id']}/templates", cls.ptok, cls.signer.sign(doc))
            assert r.status == 201, r.body
        r = api(cls.port, "POST", f"/v1/tenants/{cls.partner['id']}/templates/deal-note/versions/0.9.0/yank",
                cls.ptok)
        assert r.status == 200, r.body
        time.sleep(1.2)   # cached plans expire (auth_cache_ttl_ms = 1000)
        cls.t = f"/v1/tenants/{cls.client['id']}"

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    # ---- helpers ----

    def call(self, method, path, body=None, token=None):
        return api(self.port, method, self.t + path, token or self.operator, body)

    def install(self, body, token=None):
        return self.call("POST", "/installations", body, token)

    def problem(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertTrue(r.headers.get("content-type", "").startswith(PROBLEM), r.headers)
        b = r.json()
        self.assertEqual((b["status"], b["code"]), (status, code), b)
        return b

    def paths(self, r):
        return [e["path"] for e in self.problem(r, 400, "validation_failed")["errors"]]

    def count(self, sql):
        return int(self.p.pg.psql(sql))

    def installs(self):
        return len(self.call("GET", "/installations?limit=500").json()["items"])

    def ensure_crm(self):
        r = self.call("PUT", "/connectors/crm", {"base_url": "https://example.com"}, token=self.madmin)
        self.assertIn(r.status, (200, 201), r.body)

    # ---- tests ----

    def test_1_refusals_store_nothing(self):
        before = self.installs()
        good = {"template": "inst-partner/deal-note", "version": "1.0.0", "params": {"threshold": 10},
                "workflow_name": "notes"}
        # the body's shape
        self.assertEqual(self.paths(self.install({})), ["/template", "/version"])
        self.assertEqual(self.paths(self.install(dict(good, template="no-slash"))), ["/template"])
        self.assertEqual(self.paths(self.install(dict(good, template="A/b"))), ["/template"])
        self.assertEqual(self.paths(self.install(dict(good, version="1.0"))), ["/version"])
        self.assertEqual(self.paths(self.install(dict(good, params=[1]))), ["/params"])
        self.assertEqual(self.paths(self.install(dict(good, workflow_name="Bad Name"))), ["/workflow_name"])
        self.assertEqual(self.paths(self.install(dict(good, extra=1))), ["/extra"])
        # unknown and yanked versions
        self.problem(self.install(dict(good, version="9.9.9")), 404, "template_not_found")
        self.problem(self.install(dict(good, template="inst-partner/nothing")), 404, "template_not_found")
        self.problem(self.install(dict(good, template="nobody/deal-note")), 404, "template_not_found")
        self.problem(self.install(dict(good, version="0.9.0")), 409, "template_yanked")
        # parameter values, each at its exact path
        for params, want in (({"threshold": "10"}, ["/params/threshold"]),          # type
                             ({"threshold": 10, "tier": "gold"}, ["/params/tier"]),  # enum
                             ({"threshold": 0}, ["/params/threshold"]),              # minimum
                             ({"threshold": 1001}, ["/params/threshold"]),           # maximum
                             ({"threshold": 10, "url": "http://x"}, ["/params/url"]),  # pattern
                             ({}, ["/params/threshold"]),                            # required
                             ({"threshold": 10, "bogus": 1}, ["/params/bogus"]),     # unknown
                             ({"tier": 3, "bogus": 1}, ["/params/tier", "/params/bogus", "/params/threshold"])):
            self.assertEqual(self.paths(self.install(dict(good, params=params))), want, params)
        # a client user may read but not install
        self.problem(self.install(good, token=self.c_user), 403, "forbidden")
        self.assertEqual(self.installs(), before)
        self.assertEqual(self.call("GET", "/workflows/notes").status, 404)

    def test_2_connector_missing_then_install_and_run(self):
        good = {"template": "inst-partner/deal-note", "version": "1.0.0", "params": {"threshold": 10, "tier": "pro"},
                "workflow_name": "notes"}
        self.call("DELETE", "/connectors/crm", token=self.madmin)
        b = self.problem(self.install(good), 409, "connector_missing")
        self.assertEqual(b["connectors"], ["crm"])
        self.assertIn("crm", b["detail"])
        self.assertEqual(self.call("GET", "/workflows/notes").status, 404)
        self.ensure_crm()
        r = self.install(good)
        self.assertEqual(r.status, 201, r.body)
        inst = r.json()
        uuid.UUID(inst["id"])
        want_params = {"threshold": 10, "tier": "pro", "url": "https://crm.example.com"}
        self.assertEqual((inst["template"], inst["version"], inst["workflow"], inst["workflow_version"],
                          inst["params"]), ("inst-partner/deal-note", "1.0.0", "notes", 1, want_params))
        # the workflow version is the template's workflow with the params
        r = self.call("GET", "/workflows/notes/versions/1")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["definition"], dict(NOTE_WORKFLOW, params=want_params))
        # reads
        r = self.call("GET", f"/installations/{inst['id']}", token=self.c_user)
        self.assertEqual((r.status, r.json()["id"], r.json()["params"]), (200, inst["id"], want_params), r.body)
        self.assertEqual(self.call("GET", f"/installations/{uuid.uuid4()}").status, 404)
        self.assertEqual(self.call("GET", "/installations/not-a-uuid").status, 404)
        r = self.call("GET", "/installations?workflow=notes", token=self.c_user)
        self.assertEqual([i["id"] for i in r.json()["items"]], [inst["id"]])
        self.assertEqual(self.count("SELECT count(*) FROM platform.audit_events WHERE action = 'template.install' "
                                    f"AND target = '{inst['id']}'"), 1)
        # trigger.when reads params.threshold: 5 starts nothing, 50 a run
        r = self.call("POST", "/events", {"type": "inst.note.requested", "data": {"amount": 5}})
        self.assertEqual((r.status, r.json()["run_ids"]), (202, []), r.body)
        r = self.call("POST", "/events", {"type": "inst.note.requested", "data": {"amount": 50}})
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(len(r.json()["run_ids"]), 1, r.body)
        run = self.wait_state(r.json()["run_ids"][0], ("succeeded", "failed"))
        self.assertEqual(run["state"], "succeeded", run)
        note = [s for s in run["steps"] if s["step"] == "note"]
        self.assertEqual(note[-1]["output"], {"url": "https://crm.example.com", "tier": "pro", "amount": 50})
        # the same install again: no new workflow version
        r = self.install(good)
        self.assertEqual((r.status, r.json()["workflow_version"]), (201, 1), r.body)
        # pages
        r = self.call("GET", "/installations?limit=1")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(r.json()["items"]), 1)
        self.assertIsNotNone(r.json()["next_cursor"])
        r2 = self.call("GET", f"/installations?limit=1&cursor={r.json()['next_cursor']}")
        self.assertEqual(r2.status, 200, r2.body)
        self.assertNotEqual(r2.json()["items"][0]["id"], r.json()["items"][0]["id"])

    def test_3_upgrade_while_a_run_waits(self):
        r = self.install({"template": "inst-partner/approve", "version": "1.0.0", "params": {"who": "ops"},
                          "workflow_name": "approvals"})
        self.assertEqual((r.status, r.json()["workflow_version"]), (201, 1), r.body)
        r = self.call("POST", "/workflows/approvals/runs", {"input": {"what": "the budget"}})
        self.assertEqual(r.status, 202, r.body)
        run = r.json()
        waiting = self.wait_state(run["id"], ("waiting",))
        task = [t for t in waiting["tasks"] if t["state"] == "open"][0]
        self.assertEqual(task["title"], "Approve the budget for ops?")
        # the upgrade: a new workflow version while v1's run waits
        r = self.install({"template": "inst-partner/approve", "version": "2.0.0", "params": {"who": "ops"},
                          "workflow_name": "approvals"})
        self.assertEqual((r.status, r.json()["workflow_version"], r.json()["version"]), (201, 2, "2.0.0"), r.body)
        self.assertEqual(self.get_run(run["id"])["version"], 1)
        r = self.call("GET", "/tasks?state=open", token=self.approver)
        self.assertIn(task["id"], [t["id"] for t in r.json()["items"]])
        r = self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=self.approver)
        self.assertEqual(r.status, 200, r.body)
        done = self.wait_state(run["id"], ("succeeded", "failed"))
        self.assertEqual((done["state"], done["version"]), ("succeeded", 1), done)
        after = [s for s in done["steps"] if s["step"] == "after"]
        self.assertEqual(after[-1]["output"], {"marker": 1, "who": "ops"})
        # new runs take version 2
        r = self.call("POST", "/workflows/approvals/runs", {"input": {"what": "more"}})
        self.assertEqual((r.status, r.json()["version"]), (202, 2), r.body)
        self.assertEqual(self.call("POST", f"/runs/{r.json()['id']}/cancel").status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
