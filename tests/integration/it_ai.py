"""AI-assist steps and message steps end to end (CONTRACT 8, docs/ai.md):
a change request classified by a mock OpenAI-compatible endpoint started
here, which answers from a script keyed by a marker in the prompt.

- governance from the tenant policy: high confidence flows on, low
  confidence becomes a review task showing the draft; a rejected draft goes
  to next_on_reject, an edited one goes on with the reviewer's answer;
  every outcome in the timeline and the audit log;
- invalid output asked again once (with what was wrong), then the step
  fails with invalid_output; a model that times out is retried by the
  step's policy, then dead-lettered;
- policy: ai disabled, a task not allowed, human approval required;
  prompt logging off by default, and with it on, the step's redact values
  and the credential scrubbed;
- a message step rendering the msp's brand (with a client override)."""
import json
import re
import threading
import time
import unittest
import uuid

from mfengine import EngineEnv, RunReads
from mfharness import request
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

LLM_TOKEN = "llm-bearer-7a1c-not-for-logs"

# marker in the prompt -> the answers, in order (the last one repeats)
SCRIPT = {
    "high": ['{"label": "standard", "confidence": 0.96}'],
    "low": ['{"label": "emergency", "confidence": 0.41}'],
    "fenced": ['```json\n{"label": "normal", "confidence": 0.9}\n```'],
    "fixme": ['Sure, it is a normal change.', '{"label": "normal", "confidence": 0.88}'],
    "garbage": ['{"label": "urgent!!", "confidence": 0.99}', 'still not JSON'],
    "slow": ["SLOW"],
}

CHANGE_FLOW = {
    "trigger": {"event": "portal.request.change"},
    "steps": [
        {"id": "classify", "type": "ai", "connector": "llm", "task": "classify",
         "labels": ["standard", "normal", "emergency"], "model": "local-test",
         "prompt": "[{{ data.case }}] Classify this change request for {{ tenant.name }}: "
                   "{{ data.summary }} (requester {{ data.email }})",
         "redact": ["data.email"], "assignee_role": "change_manager", "sla": "PT1H",
         "next_on_reject": "returned"},
        {"id": "route", "type": "decide",
         "cases": [{"when": "steps.classify.output.label == 'standard'", "next": "standard"},
                   {"when": "steps.classify.output.label == 'normal'", "next": "normal"}],
         "default": "cab"},
        {"id": "standard", "type": "transform", "output": {"lane": "'standard'"}, "next": None},
        {"id": "normal", "type": "transform", "output": {"lane": "'normal'"}, "next": None},
        {"id": "cab", "type": "transform", "output": {"lane": "'cab'"}, "next": None},
        {"id": "returned", "type": "transform", "output": {"lane": "'returned'"}, "next": None},
    ],
}


class AiTest(RunReads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lock = threading.Lock()
        cls.calls = {}

        def llm(rec):
            body = rec.json()
            prompt = body["messages"][1]["content"]
            case = prompt[1:prompt.index("]")]
            with cls.lock:
                n = cls.calls.get(prompt, 0)
                cls.calls[prompt] = n + 1
            answers = SCRIPT[case]
            text = answers[min(n, len(answers) - 1)]
            if text == "SLOW":
                return Reply(200, {"choices": []}, delay=3)
            return Reply(200, {"id": "c1", "object": "chat.completion", "model": body.get("model"),
                               "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}]})

        cls.llm = MockServer({"/v1/chat/completions": llm})
        cls.env = env = EngineEnv()
        cls.tid = env.tid
        r = env.call("PUT", "/credentials/llm-key", {"type": "bearer", "data": {"token": LLM_TOKEN}})
        assert r.status in (200, 201), r.body
        env.connector("llm", f"http://localhost:{cls.llm.port}/v1", credential="llm-key")
        cls.approver = env.p.token(cls.tid, roles=["client_user", "change_manager"])
        cls.set_ai({"enabled": True, "require_human_approval": False, "min_confidence": 0.8})
        r = env.call("PUT", "/workflows/change-request", CHANGE_FLOW)
        assert r.status in (200, 201), r.body

    @classmethod
    def tearDownClass(cls):
        rcs = cls.env.close()
        cls.llm.close()
        assert rcs == [0], rcs

    # ---- helpers ----

    @classmethod
    def set_ai(cls, ai, client=None):
        """The platform's and the msp's policy (the client inherits both:
        ai.enabled is governed, so every level must allow it); client:
        the client's own document."""
        env = cls.env
        platform = env.p.admin["tenant_id"]
        r = api(env.port, "PUT", f"/v1/tenants/{platform}/policy", env.p.admin_token,
                {"egress": {"allow_hosts": ["localhost"]}, "ai": ai})
        assert r.status == 200, r.body
        r = api(env.port, "PUT", f"/v1/tenants/{env.msp['id']}/policy", env.p.admin_token, {"ai": ai})
        assert r.status == 200, r.body
        r = env.call("PUT", "/policy", client or {})
        assert r.status == 200, r.body
        time.sleep(2.3)  # past the workers' cache of tenant facts

    def request(self, case, summary="Patch the core switch", email="pat.requester@contoso.example"):
        r = self.env.call("POST", "/events", {"type": "portal.request.change",
                                              "data": {"case": case, "summary": summary + " " + uuid.uuid4().hex[:6],
                                                       "email": email}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual(r.status, 202, r.body)
        ids = r.json()["run_ids"]
        self.assertEqual(len(ids), 1, r.body)
        return ids[0]

    def step(self, run, sid, state="succeeded"):
        rows = [s for s in run["steps"] if s["step"] == sid and s["state"] == state]
        self.assertTrue(rows, f"a {state} row of {sid}: {json.dumps(run['steps'])[:2000]}")
        return rows[-1]

    def audit_outcomes(self, rid):
        out = self.env.psql(f"SELECT action || ':' || coalesce(detail->>'outcome', '') FROM platform.audit_events "
                            f"WHERE tenant_id = '{self.tid}' AND target = 'run:{rid}' AND action LIKE 'ai.%' "
                            f"ORDER BY id")
        return out.splitlines()

    # ---- governance ----

    def test_1_high_confidence_flows_on(self):
        rid = self.request("high")
        run = self.wait_state(rid, "succeeded")
        out = self.step(run, "classify")["output"]
        self.assertEqual((out["label"], out["outcome"]), ("standard", "auto"), out)
        self.assertEqual(self.step(run, "standard")["output"], {"lane": "standard"})
        self.assertEqual(self.audit_outcomes(rid), ["ai.auto:"])
        reqs = [q for q in self.llm.seen("/v1/chat/completions")
                if json.loads(q.body)["messages"][1]["content"].startswith("[high]")]
        self.assertTrue(reqs)
        body = json.loads(reqs[-1].body)
        self.assertEqual(body["model"], "local-test")
        self.assertEqual(body["response_format"], {"type": "json_object"})
        self.assertEqual(body["max_tokens"], 1024, "the policy's max_output_tokens")
        self.assertIn('["standard","normal","emergency"]', body["messages"][0]["content"])
        self.assertIn(self.env.client["name"], body["messages"][1]["content"], "{{ tenant.name }} in the prompt")
        self.assertEqual(reqs[-1].header("Authorization"), f"Bearer {LLM_TOKEN}", "the vault's credential")
        self.assertEqual(reqs[-1].path, "/v1/chat/completions")

        # prompt logging is off by default: no prompt, no answer in the timeline
        summary = json.dumps(self.step(run, "classify").get("summary"))
        self.assertNotIn("core switch", summary)
        self.assertNotIn("standard", summary.replace("[not logged", ""))
        self.assertIn("not logged", summary)

    def test_2_low_confidence_review_rejected(self):
        rid = self.request("low")
        task = self.open_task(rid)
        self.assertEqual(task["assignee_role"], "change_manager")
        self.assertEqual(task["review"]["draft"], {"label": "emergency", "confidence": 0.41})
        self.assertEqual(task["review"]["reason"], "low_confidence")
        self.assertEqual(task["review"]["spec"]["labels"], ["standard", "normal", "emergency"])
        self.assertEqual(self.get_run(rid)["state"], "waiting")

        path = f"/tasks/{task['id']}/decision"
        r = self.env.call("POST", path, {"decision": "reject", "comment": "not a change"}, token=self.approver)
        self.assertEqual(r.status, 200, r.body)
        run = self.wait_state(rid, "succeeded")
        out = self.step(run, "classify")["output"]
        self.assertEqual(out["outcome"], "rejected")
        self.assertEqual(out["draft"]["label"], "emergency")
        self.assertEqual(self.step(run, "returned")["output"], {"lane": "returned"}, "next_on_reject")
        self.assertEqual(self.audit_outcomes(rid), ["ai.reviewed:rejected"])

    def test_3_low_confidence_review_edited(self):
        rid = self.request("low")
        task = self.open_task(rid)
        path = f"/tasks/{task['id']}/decision"
        r = self.env.call("POST", path, {"decision": "approve", "output": {"label": "critical"}},
                          token=self.approver)
        self.assertEqual((r.status, r.json()["errors"][0]["path"]), (400, "/output/label"), r.body)
        r = self.env.call("POST", path, {"decision": "reject", "output": {"label": "normal"}}, token=self.approver)
        self.assertEqual((r.status, r.json()["errors"][0]["path"]), (400, "/output"), r.body)
        self.assertEqual(self.open_task(rid)["state"], "open", "refused edits change nothing")
        r = self.env.call("POST", path, {"decision": "approve", "output": {"label": "normal", "extra": 1}},
                          token=self.approver)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["output"], {"label": "normal"}, "stored as checked")
        run = self.wait_state(rid, "succeeded")
        out = self.step(run, "classify")["output"]
        self.assertEqual((out["label"], out["outcome"], out["draft"]["label"]), ("normal", "edited", "emergency"))
        self.assertEqual(self.step(run, "normal")["output"], {"lane": "normal"})
        self.assertEqual(self.audit_outcomes(rid), ["ai.reviewed:edited"])

    def test_4_low_confidence_review_accepted(self):
        rid = self.request("low")
        task = self.open_task(rid)
        r = self.env.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=self.approver)
        self.assertEqual(r.status, 200, r.body)
        run = self.wait_state(rid, "succeeded")
        out = self.step(run, "classify")["output"]
        self.assertEqual((out["label"], out["outcome"]), ("emergency", "accepted"))
        self.assertEqual(self.step(run, "cab")["output"], {"lane": "cab"})

    def test_5_edited_output_only_on_ai_reviews(self):
        flow = {"trigger": {"event": "plain.approval"}, "steps": [
            {"id": "ok", "type": "approval", "assignee_role": "change_manager", "sla": "PT1H",
             "on_timeout": "reject", "title": "ok?"}]}
        r = self.env.call("PUT", "/workflows/plain-approval", flow)
        self.assertIn(r.status, (200, 201), r.body)
        r = self.env.call("POST", "/events", {"type": "plain.approval", "data": {}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        rid = r.json()["run_ids"][0]
        task = self.open_task(rid)
        self.assertIsNone(task["review"])
        r = self.env.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve", "output": {"a": 1}},
                          token=self.approver)
        self.assertEqual((r.status, r.json()["errors"][0]["path"]), (400, "/output"), r.body)
        self.assertEqual(self.open_task(rid)["state"], "open")

    # ---- invalid output, timeouts ----

    def test_6_invalid_output_asked_again_once(self):
        rid = self.request("fenced")
        run = self.wait_state(rid, "succeeded")
        self.assertEqual(self.step(run, "classify")["output"]["label"], "normal", "a ``` fence is fine")

        rid = self.request("fixme")
        run = self.wait_state(rid, "succeeded")
        self.assertEqual(self.step(run, "classify", "retrying")["error"]["code"], "invalid_output")
        self.assertEqual(self.step(run, "classify")["output"]["label"], "normal")
        reqs = [json.loads(q.body) for q in self.llm.seen("/v1/chat/completions")
                if json.loads(q.body)["messages"][1]["content"].startswith("[fixme]")]
        self.assertGreaterEqual(len(reqs), 2)
        self.assertEqual(len(reqs[-1]["messages"]), 3, "the second question says what was wrong")
        self.assertIn("not a JSON object", reqs[-1]["messages"][2]["content"])

    def test_7_invalid_twice_fails_the_step(self):
        rid = self.request("garbage")
        run = self.wait_state(rid, "failed")
        self.assertEqual(run["error"]["code"], "invalid_output", run["error"])
        self.assertEqual(run["error"]["step"], "classify")
        self.assertNotIn("urgent!!", json.dumps(run["error"]), "errors never quote the answer")
        r = self.env.call("GET", "/runs?state=failed")
        self.assertIn(rid, [x["id"] for x in r.json()["items"]], "in the dead-letter list")

    def test_8_timeouts_follow_the_retry_policy(self):
        flow = json.loads(json.dumps(CHANGE_FLOW))
        flow["trigger"]["event"] = "portal.request.slowchange"
        flow["steps"][0].update({"timeout": "PT1S", "retry": {"max_attempts": 2, "backoff": "PT1S",
                                                               "max_backoff": "PT1S"}})
        r = self.env.call("PUT", "/workflows/slow-change", flow)
        self.assertIn(r.status, (200, 201), r.body)
        r = self.env.call("POST", "/events", {"type": "portal.request.slowchange",
                                              "data": {"case": "slow", "summary": "x", "email": "e@x.example"}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        rid = r.json()["run_ids"][0]
        run = self.wait_state(rid, "failed", timeout=30)
        self.assertEqual((run["error"]["code"], run["error"]["attempts"]), ("timeout", 2), run["error"])

    # ---- policy ----

    def test_9_policy_governs(self):
        try:
            # a human must approve whatever the confidence; prompts logged
            self.set_ai({"enabled": True, "require_human_approval": True, "min_confidence": 0.5,
                         "log_prompts": True})
            rid = self.request("high", email="secret.person@contoso.example")
            task = self.open_task(rid)
            self.assertEqual(task["review"]["reason"], "policy")
            run = self.get_run(rid)
            row = self.step(run, "classify", "waiting")
            summary = json.dumps(row["summary"])
            self.assertIn("Patch the core switch", summary, "the prompt is logged")
            self.assertNotIn("secret.person@contoso.example", summary, "the step's redact values are not")
            self.assertIn("[redacted]", summary)
            self.assertNotIn(LLM_TOKEN, json.dumps(run), "nor the credential")
            r = self.env.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=self.approver)
            self.assertEqual(r.status, 200, r.body)
            self.wait_state(rid, "succeeded")

            # the client narrows what its msp allows
            self.set_ai({"enabled": True, "require_human_approval": False, "min_confidence": 0.5},
                        client={"ai": {"allowed_tasks": ["summarize"]}})
            n = len(self.llm.seen("/v1/chat/completions"))
            rid = self.request("high")
            run = self.wait_state(rid, "failed")
            self.assertEqual(run["error"]["code"], "ai_task_not_allowed")

            self.set_ai({"enabled": False})
            rid = self.request("high")
            run = self.wait_state(rid, "failed")
            self.assertEqual(run["error"]["code"], "ai_disabled")
            self.assertEqual(len(self.llm.seen("/v1/chat/completions")), n, "no call without the policy")
        finally:
            self.set_ai({"enabled": True, "require_human_approval": False, "min_confidence": 0.8})

    def test_90_metrics(self):
        r = request(self.env.p.servers[0].admin_port, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        text = r.body.decode()
        counts = {g: int(re.search(r'mspflow_engine_ai_answers_total\{governance="%s"\} (\d+)' % g, text).group(1))
                  for g in ("auto", "review")}
        self.assertGreaterEqual(counts["auto"], 1, text)
        self.assertGreaterEqual(counts["review"], 1, text)
        self.assertGreaterEqual(int(re.search(r"mspflow_engine_ai_invalid_answers_total (\d+)", text).group(1)), 2)

    # ---- messages ----

    def test_12_message_step_renders_the_brand(self):
        r = api(self.env.port, "PUT", f"/v1/tenants/{self.env.msp['id']}/branding", self.env.msp_tok,
                {"display_name": "Northwind <IT>", "support_email": "help@northwind.example"})
        self.assertEqual(r.status, 200, r.body)
        flow = {"trigger": {"event": "portal.request.welcome"},
                "messages": {"welcome": "Welcome to {{ brand.display_name }}, {{ data.name }}!"
                                        "{{# brand.support_email }} Write to {{ brand.support_email }}.{{/ brand.support_email }}"
                                        "{{^ brand.phone }} No phone.{{/ brand.phone }}"},
                "steps": [{"id": "hello", "type": "message", "message": "welcome"}]}
        r = self.env.call("PUT", "/workflows/welcome", flow)
        self.assertIn(r.status, (200, 201), r.body)
        time.sleep(2.2)  # branding reaches the workers' cache
        r = self.env.call("POST", "/events", {"type": "portal.request.welcome", "data": {"name": "Ann & Bo"}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        rid = r.json()["run_ids"][0]
        run = self.wait_state(rid, "succeeded")
        self.assertEqual(self.step(run, "hello")["output"]["text"],
                         "Welcome to Northwind &lt;IT&gt;, Ann &amp; Bo! Write to help@northwind.example. No phone.")

        # a client override wins over the msp's
        r = self.env.call("PUT", "/branding", {"display_name": "Contoso Service Desk"})
        self.assertEqual(r.status, 200, r.body)
        time.sleep(2.2)
        r = self.env.call("POST", "/events", {"type": "portal.request.welcome", "data": {"name": "Cy"}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        run = self.wait_state(r.json()["run_ids"][0], "succeeded")
        self.assertTrue(self.step(run, "hello")["output"]["text"].startswith("Welcome to Contoso Service Desk, Cy!"))

        bad = {"trigger": {"event": "a.b"}, "messages": {"m": "{{# open }}"},
               "steps": [{"id": "x", "type": "message", "message": "nope"}]}
        r = self.env.call("PUT", "/workflows/bad-message", bad)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual([e["path"] for e in r.json()["errors"]], ["/messages/m", "/steps/0/message"])


if __name__ == "__main__":
    unittest.main()
