"""The engine end to end over the public API (CONTRACT 6), against mock
CRM, PSA and ERP systems and a webhook receiver started here:

- the opportunity-to-project seed: the deal event, the margin decide, an
  approval granted by a holder of the role, the PSA project created once,
  the ERP billing schedule, the outbound webhook verified by the receiver;
- retries (Retry-After honoured, per-step timeouts) then dead-letter, the DLQ listing, and a
  manual retry to success; a non-retryable 4xx dead-letters at once;
- an approval's SLA escalating to another role, then expiring to the
  reject branch;
- a wait for an event matching an expression, woken by an event another
  workflow emits; a wait that times out;
- cancel; a suspended tenant's runs pause and continue on resume;
- every run state change and decision in the tenant's audit log."""
import base64
import hashlib
import hmac
import json
import os
import threading
import time
import unittest
import uuid

from mfengine import EngineEnv, RunReads
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def verify_standard_webhook(secret, rec):
    """The receiver's side of Standard Webhooks: HMAC-SHA256 of
    "<id>.<timestamp>.<body>" under the base64 key after "whsec_"."""
    key = base64.b64decode(secret.split("_", 1)[1])
    msg = f"{rec.header('webhook-id')}.{rec.header('webhook-timestamp')}.".encode() + rec.body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    sigs = [s.split(",", 1)[1] for s in (rec.header("webhook-signature") or "").split() if s.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs) and \
        abs(time.time() - int(rec.header("webhook-timestamp"))) < 300


class EngineTest(RunReads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lock = threading.Lock()
        cls.flaky = {"fail": 0, "retry_after": None, "status": 503}

        def crm(rec):
            deal = rec.path.rsplit("/", 1)[1]
            margin = 0.1 if deal.startswith("LOW") else 0.35
            return Reply(200, {"id": deal, "margin": margin, "company_id": "co-77", "name": f"Deal {deal}"})

        def psa(rec):
            return Reply(201, {"id": "prj-" + json.loads(rec.body)["deal_id"]})

        def erp(rec):
            return Reply(201, {"id": "bs-" + rec.path.split("project=", 1)[1]})

        def flaky(rec):
            with cls.lock:
                if cls.flaky["fail"] > 0:
                    cls.flaky["fail"] -= 1
                    h = {"Retry-After": cls.flaky["retry_after"]} if cls.flaky["retry_after"] else {}
                    return Reply(cls.flaky["status"], {"error": "down"}, headers=h)
            return Reply(200, {"ok": True})

        cls.crm = MockServer({"/deals/": crm})
        cls.psa = MockServer({"/projects": psa})
        cls.erp = MockServer({"/v2/billing/schedules": erp})
        cls.peer = MockServer({"/flaky": flaky, "/slow": lambda rec: Reply(200, {"ok": True}, delay=4)})
        cls.receiver = MockServer({"/hook": lambda rec: Reply(204)})
        cls.env = env = EngineEnv()
        cls.tid = env.tid
        for name, m in (("crm", cls.crm), ("psa", cls.psa), ("erp", cls.erp), ("peer", cls.peer)):
            env.connector(name, f"http://localhost:{m.port}")
        cls.finance = env.p.token(cls.tid, roles=["client_user", "finance_approver"])
        cls.user = env.p.token(cls.tid, roles=["client_user"])
        cls.operator = env.p.token(env.msp["id"], roles=["msp_operator"])
        with open(os.path.join(ROOT, "engine", "seeds", "opportunity_to_project.json")) as f:
            cls.seed = json.load(f)

    @classmethod
    def tearDownClass(cls):
        rcs = cls.env.close()
        for m in (cls.crm, cls.psa, cls.erp, cls.peer, cls.receiver):
            m.close()
        assert rcs == [0], rcs

    # ---- helpers ----

    def put_workflow(self, name, definition):
        r = self.env.call("PUT", f"/workflows/{name}", definition)
        self.assertIn(r.status, (200, 201), r.body)
        return r.json()

    def event(self, type_, data, key=None):
        r = self.env.call("POST", "/events", {"type": type_, "data": data},
                          headers={"Idempotency-Key": key or str(uuid.uuid4())})
        self.assertEqual(r.status, 202, r.body)
        return r.json()

    def audit(self, target):
        """Actions on target, or naming it in their detail (a task's
        rows name the task)."""
        kind, id_ = target.split(":", 1)
        out = self.env.psql(f"SELECT action FROM platform.audit_events WHERE tenant_id = '{self.tid}' "
                            f"AND (target = '{target}' OR detail->>'{kind}' = '{id_}') ORDER BY id")
        return out.splitlines()

    # ---- the seed, end to end ----

    def test_opportunity_to_project(self):
        self.put_workflow("opportunity-to-project", self.seed)
        r = self.env.call("PUT", "/webhooks/projects",
                          {"url": f"http://localhost:{self.receiver.port}/hook", "events": ["project.created"]})
        self.assertIn(r.status, (200, 201), r.body)
        secret = r.json()["secret"]
        self.assertTrue(secret.startswith("whsec_"))

        deal = "LOW-" + uuid.uuid4().hex[:8]
        ans = self.event("crm.deal.closed_won", {"deal": {"id": deal, "amount": 48000}})
        self.assertEqual(len(ans["run_ids"]), 1, ans)
        rid = ans["run_ids"][0]

        task = self.open_task(rid)
        self.assertEqual(task["assignee_role"], "finance_approver")
        self.assertIn(f"Deal {deal}", task["title"])
        self.assertEqual(self.get_run(rid)["state"], "waiting")
        self.assertEqual([q for q in self.psa.seen("/projects") if json.loads(q.body)["deal_id"] == deal], [],
                         "nothing created before the approval")

        path = f"/tasks/{task['id']}/decision"
        r = self.env.call("POST", path, {"decision": "approve"}, token=self.user)
        self.assertEqual((r.status, r.json()["code"]), (403, "not_assignee"), r.body)
        r = self.env.call("POST", path, {"decision": "approve", "comment": "margin ok for a pilot"},
                          token=self.finance)
        self.assertEqual(r.status, 200, r.body)
        r = self.env.call("POST", path, {"decision": "reject"}, token=self.finance)
        self.assertEqual((r.status, r.json()["code"]), (409, "task_closed"), r.body)

        run = self.wait_state(rid, "succeeded")
        done = [s["step"] for s in run["steps"] if s["state"] == "succeeded"]
        self.assertEqual(done, ["fetch_deal", "check_margin", "finance_approval", "create_project",
                                "billing_schedule", "notify"])

        projects = [q for q in self.psa.seen("/projects") if json.loads(q.body)["deal_id"] == deal]
        self.assertEqual(len(projects), 1, "the PSA project created once")
        self.assertEqual(projects[0].header("Idempotency-Key"), f"{rid}:create_project")
        self.assertEqual(json.loads(projects[0].body)["budget"], 48000, "a lone {{ }} keeps the number")
        sched = self.erp.seen(f"/v2/billing/schedules?project=prj-{deal}")
        self.assertEqual(len(sched), 1)
        self.assertEqual(json.loads(sched[0].body)["customer"], "co-77")

        # the emitted event went out to the subscription, signed
        def delivered():
            for rec in self.receiver.seen("/hook"):
                body = json.loads(rec.body)
                if body["type"] == "project.created" and body["data"]["deal_id"] == deal:
                    return rec
        rec = wait_until(delivered, 20, 0.2)
        self.assertIsNotNone(rec, "the outbound webhook arrived")
        self.assertTrue(verify_standard_webhook(secret, rec), "its signature verifies")
        self.assertEqual(json.loads(rec.body)["data"]["billing_schedule"], f"bs-prj-{deal}")
        r = self.env.call("GET", "/webhooks/projects/deliveries")
        self.assertEqual(r.status, 200, r.body)
        self.assertTrue(any(d.get("state") == "delivered" for d in r.json()["items"]), r.body)

        acts = self.audit(f"run:{rid}")
        self.assertIn("run.created", acts)
        self.assertIn("run.succeeded", acts)
        self.assertTrue(any(a.startswith("task.") for a in self.audit(f"task:{task['id']}")),
                        "the decision is audited")

    def test_high_margin_skips_the_approval(self):
        self.put_workflow("opportunity-to-project", self.seed)
        deal = "HI-" + uuid.uuid4().hex[:8]
        rid = self.event("crm.deal.closed_won", {"deal": {"id": deal, "amount": 9000}})["run_ids"][0]
        run = self.wait_state(rid, "succeeded")
        self.assertNotIn("finance_approval", [s["step"] for s in run["steps"]])
        self.assertEqual(len([q for q in self.psa.seen("/projects") if json.loads(q.body)["deal_id"] == deal]), 1)

    # ---- retries, dead-letter, manual retry ----

    def test_retries_dead_letter_then_manual_retry(self):
        self.put_workflow("flaky", {"trigger": {"event": "test.flaky"}, "steps": [
            {"id": "prep", "type": "transform", "output": {"n": "data.n + 1"}},
            {"id": "call", "type": "http", "connector": "peer", "method": "POST", "path": "/flaky",
             "body": {"n": "{{ steps.prep.output.n }}"},
             "retry": {"max_attempts": 3, "backoff": "PT1S", "max_backoff": "PT2S"}},
            {"id": "after", "type": "transform", "output": {"ok": "steps.call.output.ok"}}]})
        with self.lock:
            self.flaky.update(fail=3, retry_after="2", status=503)
        rid = self.event("test.flaky", {"n": 1})["run_ids"][0]
        run = self.wait_state(rid, "failed", 30)
        self.assertEqual(run["step"], "call")
        self.assertEqual(run["error"]["attempts"], 3, run["error"])
        self.assertEqual(run["error"]["status"], 503, run["error"])
        calls = [q for q in self.peer.seen("/flaky") if q.header("Idempotency-Key") == f"{rid}:call"]
        self.assertEqual(len(calls), 3)
        gaps = [b.at - a.at for a, b in zip(calls, calls[1:])]
        self.assertTrue(all(g >= 1.9 for g in gaps), f"Retry-After: 2 honoured: {gaps}")
        states = [s["state"] for s in run["steps"] if s["step"] == "call"]
        self.assertEqual(states, ["retrying", "retrying", "failed"])

        r = self.env.call("GET", "/runs?state=failed&workflow=flaky")
        self.assertIn(rid, [x["id"] for x in r.json()["items"]], "the DLQ lists it")

        r = self.env.call("POST", f"/runs/{rid}/retry")
        self.assertIn(r.status, (200, 202), r.body)
        run = self.wait_state(rid, "succeeded")
        self.assertEqual(run["steps"][-1]["step"], "after")
        r = self.env.call("POST", f"/runs/{rid}/retry")
        self.assertEqual((r.status, r.json()["code"]), (409, "run_not_failed"), r.body)
        acts = self.audit(f"run:{rid}")
        self.assertIn("run.failed", acts)
        self.assertIn("run.retried", acts)
        self.assertEqual(acts[-1], "run.succeeded")

    def test_client_error_dead_letters_at_once(self):
        self.put_workflow("bad-request", {"trigger": {"event": "test.bad"}, "steps": [
            {"id": "call", "type": "http", "connector": "peer", "method": "POST", "path": "/flaky/4xx",
             "retry": {"max_attempts": 5, "backoff": "PT1S", "max_backoff": "PT1S"}}]})
        with self.lock:
            self.flaky.update(fail=1, retry_after=None, status=422)
        rid = self.event("test.bad", {})["run_ids"][0]
        run = self.wait_state(rid, "failed")
        self.assertEqual(run["error"]["attempts"], 1, run["error"])
        self.assertEqual(run["error"]["status"], 422)

    def test_step_timeout(self):
        self.put_workflow("too-slow", {"trigger": {"event": "test.slow"}, "steps": [
            {"id": "call", "type": "http", "connector": "peer", "method": "GET", "path": "/slow",
             "timeout": "PT1S", "retry": {"max_attempts": 2, "backoff": "PT1S", "max_backoff": "PT1S"}}]})
        t0 = time.time()
        rid = self.event("test.slow", {})["run_ids"][0]
        run = self.wait_state(rid, "failed", 20)
        self.assertLess(time.time() - t0, 6, "each attempt was cut at its timeout")
        self.assertEqual((run["error"]["code"], run["error"]["attempts"]), ("timeout", 2), run["error"])
        self.assertEqual([s["state"] for s in run["steps"]], ["retrying", "failed"])

    # ---- approvals: SLA escalation, expiry ----

    def test_sla_escalates_then_expires(self):
        self.put_workflow("sla", {"trigger": {"event": "test.sla"}, "steps": [
            {"id": "ok", "type": "approval", "assignee_role": "finance_approver", "sla": "PT2S",
             "on_timeout": "escalate", "escalate_to": "msp_operator", "title": "approve {{ data.what }}",
             "next": "yes", "next_on_reject": "no"},
            {"id": "yes", "type": "transform", "output": {"r": "'approved'"}, "next": None},
            {"id": "no", "type": "transform", "output": {"r": "'rejected'"}}]})
        # escalated, then decided by the new assignee
        rid = self.event("test.sla", {"what": "a"})["run_ids"][0]
        esc = wait_until(lambda: next((t for t in self.env.call("GET", "/tasks?state=open").json()["items"]
                                       if t["run_id"] == rid and t["escalated"]), None), 15, 0.1)
        self.assertIsNotNone(esc, "the task escalated after its SLA")
        self.assertEqual(esc["assignee_role"], "msp_operator")
        r = self.env.call("POST", f"/tasks/{esc['id']}/decision", {"decision": "approve"}, token=self.finance)
        self.assertEqual((r.status, r.json()["code"]), (403, "not_assignee"), "the first role lost it")
        r = self.env.call("POST", f"/tasks/{esc['id']}/decision", {"decision": "approve"}, token=self.operator)
        self.assertEqual(r.status, 200, r.body)
        run = self.wait_state(rid, "succeeded")
        self.assertEqual(run["steps"][-1]["step"], "yes")

        # nobody decides: escalated, then expired to the reject branch
        rid = self.event("test.sla", {"what": "b"})["run_ids"][0]
        run = self.wait_state(rid, "succeeded", 20)
        self.assertEqual(run["steps"][-1]["step"], "no")
        t = self.env.call("GET", "/tasks?state=expired").json()["items"]
        self.assertIn(rid, [x["run_id"] for x in t])

    # ---- waits, and events emitted by one workflow waking another ----

    def test_wait_for_a_matching_event(self):
        self.put_workflow("await-signal", {"trigger": {"event": "test.order"}, "steps": [
            {"id": "first", "type": "transform", "output": {"order": "data.order"}},
            {"id": "sig", "type": "wait", "event": "test.signal", "match": "data.order == steps.first.output.order",
             "timeout": "PT60S"},
            {"id": "last", "type": "transform", "output": {"note": "steps.sig.output.event.data.note"}}]})
        self.put_workflow("signaller", {"trigger": {"event": "test.ping"}, "steps": [
            {"id": "say", "type": "emit", "event": "test.signal",
             "data": {"order": "{{ data.order }}", "note": "pong {{ data.order }}"}}]})
        one = self.event("test.order", {"order": 1})["run_ids"][0]
        two = self.event("test.order", {"order": 2})["run_ids"][0]
        self.wait_state(one, "waiting")
        self.wait_state(two, "waiting")
        self.event("test.ping", {"order": 2})
        run = self.wait_state(two, "succeeded")
        self.assertEqual(run["steps"][-1]["output"], {"note": "pong 2"})
        time.sleep(0.5)
        self.assertEqual(self.get_run(one)["state"], "waiting", "an event that does not match wakes nothing")
        self.event("test.signal", {"order": 1, "note": "direct"})
        run = self.wait_state(one, "succeeded")
        self.assertEqual(run["steps"][-1]["output"], {"note": "direct"})

    def test_wait_timeout_dead_letters(self):
        self.put_workflow("await-nothing", {"trigger": {"event": "test.lonely"}, "steps": [
            {"id": "sig", "type": "wait", "event": "test.never", "timeout": "PT1S"}]})
        rid = self.event("test.lonely", {})["run_ids"][0]
        run = self.wait_state(rid, "failed", 15)
        self.assertEqual(run["error"]["code"], "wait_timeout", run["error"])

    # ---- cancel ----

    def test_cancel(self):
        self.put_workflow("cancel-me", {"trigger": {"event": "test.cancel"}, "steps": [
            {"id": "hold", "type": "approval", "assignee_role": "finance_approver", "sla": "P1D", "title": "hold",
             "on_timeout": "reject", "next": "after"},
            {"id": "after", "type": "transform", "output": {"x": "1"}}]})
        rid = self.event("test.cancel", {})["run_ids"][0]
        task = self.open_task(rid)
        r = self.env.call("POST", f"/runs/{rid}/cancel")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.get_run(rid)["state"], "cancelled")
        r = self.env.call("POST", f"/runs/{rid}/cancel")
        self.assertEqual((r.status, r.json()["code"]), (409, "run_finished"), r.body)
        r = self.env.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=self.finance)
        self.assertEqual((r.status, r.json()["code"]), (409, "task_closed"), r.body)
        time.sleep(0.5)
        self.assertEqual(self.get_run(rid)["state"], "cancelled", "a cancelled run stays cancelled")
        self.assertIn("run.cancelled", self.audit(f"run:{rid}"))

    # ---- suspended tenants pause ----

    def test_suspended_tenant_pauses_and_resumes(self):
        c = self.env.p.create_client(self.env.msp["id"], "eng-pausable")
        tid = c["id"]
        r = self.env.call("PUT", "/workflows/later", {"trigger": {"event": "test.later"}, "steps": [
            {"id": "nap", "type": "wait", "duration": "PT2S"},
            {"id": "after", "type": "transform", "output": {"x": "1"}}]}, tid=tid)
        self.assertEqual(r.status, 201, r.body)
        r = self.env.call("POST", "/events", {"type": "test.later", "data": {}}, tid=tid)
        self.assertEqual(r.status, 202, r.body)
        rid = r.json()["run_ids"][0]
        schema = self.env.tenant_schema(tid)
        state = lambda: self.env.psql(f"SELECT state FROM {schema}.runs WHERE id = '{rid}'")
        self.assertTrue(wait_until(lambda: state() == "waiting", 10))
        r = api(self.env.port, "POST", f"/v1/tenants/{tid}/suspend", self.env.p.admin_token, {})
        self.assertIn(r.status, (200, 204), r.body)
        time.sleep(4)
        self.assertEqual(state(), "waiting", "a suspended tenant's run does not move")
        r = api(self.env.port, "POST", f"/v1/tenants/{tid}/resume", self.env.p.admin_token, {})
        self.assertIn(r.status, (200, 204), r.body)
        self.assertTrue(wait_until(lambda: state() == "succeeded", 10), "it continues on resume")


if __name__ == "__main__":
    unittest.main(verbosity=2)
