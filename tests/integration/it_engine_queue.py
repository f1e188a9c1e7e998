"""The run queue's functions under the races a real worker meets, driven
by hand: the server runs with engine_enabled = 0 (routes only), and the
test plays the workers with platform.eng_claim / eng_apply.

- a decision that lands while a worker holds the run and expires the
  task: the decision wins, the worker's stale pass is not applied;
- lease fencing: a worker whose lease expired writes nothing, the new
  owner does;
- a cancel while a worker holds the run: its pass is dropped;
- suspended tenants are not claimed, resumed ones are;
- a tenant gets at most its concurrent-run limit, and another tenant's run
  comes in the same claim."""
import json
import time
import unittest
import uuid

from mfengine import EngineEnv
from mfidentity import api


class EngineQueueTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = EngineEnv(config={"engine_enabled": 0})
        cls.finance = cls.env.p.token(cls.env.tid, roles=["finance_approver"])
        r = cls.env.call("PUT", "/workflows/appr", {"trigger": {"event": "test.appr"}, "steps": [
            {"id": "ok", "type": "approval", "assignee_role": "finance_approver", "sla": "P1D", "title": "ok?",
             "on_timeout": "reject", "next": "yes", "next_on_reject": "no"},
            {"id": "yes", "type": "transform", "output": {"x": "1"}, "next": None},
            {"id": "no", "type": "transform", "output": {"x": "0"}}]})
        assert r.status == 201, r.body

    @classmethod
    def tearDownClass(cls):
        assert cls.env.close() == [0]

    # ---- playing a worker ----

    def sql(self, q):
        return self.env.psql(q)

    def start(self, tid=None):
        r = self.env.call("POST", "/workflows/appr/runs", {"input": {}}, tid=tid)
        self.assertEqual(r.status, 202, r.body)
        return r.json()["id"]

    def claim(self, owner, lease_ms=60000, batch=64):
        out = self.sql(f"SELECT run_id, tenant_id FROM platform.eng_claim('{owner}', {lease_ms}, {batch})")
        return [l.split("|") for l in out.splitlines() if l]

    def apply(self, owner, changes, tid=None):
        tid = tid or self.env.tid
        schema = self.env.tenant_schema(tid)
        c = json.dumps(changes).replace("'", "''")
        out = self.sql(f"SELECT platform.eng_apply('{tid}', '{schema}', '{owner}', '{c}'::jsonb)")
        return out.strip("{}").split(",") if out.strip("{}") else []

    def run_state(self, rid, tid=None):
        schema = self.env.tenant_schema(tid) if tid else self.env.schema
        return self.sql(f"SELECT state FROM {schema}.runs WHERE id = '{rid}'")

    def queue(self, rid):
        return self.sql(f"SELECT coalesce(owner::text, '-'), due_at <= now() FROM platform.run_queue "
                        f"WHERE run_id = '{rid}'")

    def release(self, owner):
        """Ends every lease owner holds (a finished worker)."""
        self.sql(f"UPDATE platform.run_queue SET owner = NULL, due_at = now() WHERE owner = '{owner}'")

    # ---- the races ----

    def test_decision_beats_a_stale_expiry(self):
        x = str(uuid.uuid4())
        rid, task = self.start(), str(uuid.uuid4())
        self.assertIn(rid, [r for r, _ in self.claim(x)])
        due = "2999-01-01T00:00:00Z"
        self.assertEqual(self.apply(x, [{"run": rid, "state": "waiting", "step": "ok",
                                         "wait": {"task": task, "seq": 1},
                                         "task": {"id": task, "step": "ok", "title": "t",
                                                  "assignee_role": "finance_approver", "due_at": due},
                                         "due": due}]), [rid])
        # the SLA "passes": the worker holds the run again, and meanwhile a
        # holder of the role decides
        self.sql(f"SELECT platform.eng_enqueue('{self.env.tid}', '{self.env.schema}', ARRAY['{rid}'::uuid], NULL)")
        self.assertIn(rid, [r for r, _ in self.claim(x)])
        r = self.env.call("POST", f"/tasks/{task}/decision", {"decision": "approve"}, token=self.finance)
        self.assertEqual(r.status, 200, r.body)
        stale = {"run": rid, "state": "succeeded", "step": None, "task_update": {"id": task, "state": "expired"},
                 "steps": [{"seq": 1, "step": "ok", "type": "approval", "attempt": 1, "state": "succeeded",
                            "started_at": "2026-01-01T00:00:00Z", "finished_at": "2026-01-01T00:00:01Z",
                            "output": {"decision": "expired"}}],
                 "audit": [{"action": "task.expired", "detail": {"task": task}}]}
        self.assertEqual(self.apply(x, [stale]), [], "the stale pass is refused")
        schema = self.env.schema
        self.assertEqual(self.sql(f"SELECT state FROM {schema}.tasks WHERE id = '{task}'"), "approved")
        self.assertEqual(self.run_state(rid), "waiting", "the run is untouched")
        self.assertEqual(self.sql(f"SELECT count(*) FROM {schema}.run_steps WHERE run_id = '{rid}'"), "0")
        self.assertEqual(self.queue(rid), "-|t", "released, due now: the decision is seen next")

    def test_an_expired_lease_writes_nothing(self):
        x, y = str(uuid.uuid4()), str(uuid.uuid4())
        rid = self.start()
        self.assertIn(rid, [r for r, _ in self.claim(x, lease_ms=1)])
        time.sleep(0.05)
        self.assertIn(rid, [r for r, _ in self.claim(y)], "the lapsed lease returned the run")
        done = {"run": rid, "state": "succeeded", "step": None}
        self.assertEqual(self.apply(x, [done]), [], "the old owner is fenced off")
        self.assertEqual(self.run_state(rid), "pending")
        self.assertEqual(self.apply(y, [done]), [rid])
        self.assertEqual(self.run_state(rid), "succeeded")
        self.assertEqual(self.queue(rid), "", "out of the queue")
        self.release(x)
        self.release(y)

    def test_cancel_while_held(self):
        x = str(uuid.uuid4())
        rid = self.start()
        self.assertIn(rid, [r for r, _ in self.claim(x)])
        r = self.env.call("POST", f"/runs/{rid}/cancel")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.apply(x, [{"run": rid, "state": "succeeded", "step": None}]), [])
        self.assertEqual(self.run_state(rid), "cancelled")
        self.assertEqual(self.queue(rid), "")
        self.release(x)

    def test_suspended_tenants_are_not_claimed(self):
        x = str(uuid.uuid4())
        c = self.env.p.create_client(self.env.msp["id"], "eng-q-susp")
        r = self.env.call("PUT", "/workflows/appr", {"trigger": {"event": "test.appr"}, "steps": [
            {"id": "t", "type": "transform", "output": {"x": "1"}}]}, tid=c["id"])
        self.assertEqual(r.status, 201, r.body)
        rid = self.start(tid=c["id"])
        admin = self.env.p.admin_token
        self.assertIn(api(self.env.port, "POST", f"/v1/tenants/{c['id']}/suspend", admin, {}).status, (200, 204))
        self.assertNotIn(rid, [r for r, _ in self.claim(x)])
        self.release(x)
        self.assertIn(api(self.env.port, "POST", f"/v1/tenants/{c['id']}/resume", admin, {}).status, (200, 204))
        self.assertIn(rid, [r for r, _ in self.claim(x)])
        self.release(x)

    def test_max_queued_runs_admission(self):
        c = self.env.p.create_client(self.env.msp["id"], "eng-q-full")["id"]
        r = api(self.env.port, "PUT", f"/v1/tenants/{c}/policy", self.env.p.admin_token,
                {"engine": {"max_queued_runs": 3}})
        self.assertEqual(r.status, 200, r.body)
        r = self.env.call("PUT", "/workflows/appr", {"trigger": {"event": "test.full"}, "steps": [
            {"id": "t", "type": "transform", "output": {"x": "1"}}]}, tid=c)
        self.assertEqual(r.status, 201, r.body)
        first = self.env.call("POST", "/events", {"type": "test.full", "data": {}}, tid=c,
                              headers={"Idempotency-Key": "full-1"})
        self.assertEqual(first.status, 202, first.body)
        ids = [self.start(tid=c) for _ in range(2)]
        r = self.env.call("POST", "/workflows/appr/runs", {"input": {}}, tid=c)
        self.assertEqual((r.status, r.json()["code"]), (429, "too_many_runs"), r.body)
        self.assertEqual(r.headers.get("retry-after"), "60")
        r = self.env.call("POST", "/events", {"type": "test.full", "data": {}}, tid=c,
                          headers={"Idempotency-Key": "full-2"})
        self.assertEqual((r.status, r.json()["code"]), (429, "too_many_runs"), r.body)
        schema = self.env.tenant_schema(c)
        self.assertEqual(self.sql(f"SELECT count(*) FROM {schema}.events"), "1", "a refused event is not stored")
        # an event that starts nothing, and a replay, are still answered
        r = self.env.call("POST", "/events", {"type": "test.other", "data": {}}, tid=c)
        self.assertEqual(r.status, 202, r.body)
        r = self.env.call("POST", "/events", {"type": "test.full", "data": {}}, tid=c,
                          headers={"Idempotency-Key": "full-1"})
        self.assertEqual((r.status, r.json()), (202, first.json()))
        # room again once a run has finished
        self.assertEqual(self.env.call("POST", f"/runs/{ids[0]}/cancel", tid=c).status, 200)
        self.start(tid=c)

    def test_deleting_a_tenant_clears_its_queue(self):
        x = str(uuid.uuid4())
        c = self.env.p.create_client(self.env.msp["id"], "eng-q-gone")["id"]
        r = self.env.call("PUT", "/workflows/appr", {"trigger": {"event": "test.gone"}, "steps": [
            {"id": "t", "type": "transform", "output": {"x": "1"}}]}, tid=c)
        self.assertEqual(r.status, 201, r.body)
        held = self.start(tid=c)
        self.assertIn(held, [r for r, _ in self.claim(x)])
        self.start(tid=c)
        r = self.env.call("POST", "/hooks", {"event_type": "test.gone"}, tid=c)
        self.assertEqual(r.status, 201, r.body)
        r = api(self.env.port, "DELETE", f"/v1/tenants/{c}", self.env.p.admin_token)
        self.assertIn(r.status, (200, 204), r.body)
        for table in ("run_queue", "engine_tenants", "hooks"):
            self.assertEqual(self.sql(f"SELECT count(*) FROM platform.{table} WHERE tenant_id = '{c}'"), "0", table)
        self.assertEqual(self.apply(x, [{"run": held, "state": "succeeded", "step": None}], tid=c), [],
                         "a worker still holding a run of the tenant writes nothing")
        self.release(x)

    def test_limit_per_tenant_and_round_robin(self):
        x, y = str(uuid.uuid4()), str(uuid.uuid4())
        a = self.env.p.create_client(self.env.msp["id"], "eng-q-busy")["id"]
        b = self.env.p.create_client(self.env.msp["id"], "eng-q-idle")["id"]
        for t in (a, b):
            self.env.install("appr", {"trigger": {"event": "test.appr"}, "steps": [
                {"id": "t", "type": "transform", "output": {"x": "1"}}]}, tid=t)
        self.env.start_many(100, "appr", 1, "t", tid=a)
        rb = str(uuid.uuid4())
        self.env.start_runs([rb], "appr", 1, "t", tid=b)
        got = self.claim(x, batch=64)
        self.assertEqual(sum(1 for _, t in got if t == a), 20, "A gets its limit of 20")
        self.assertIn(rb, [r for r, _ in got], "B's run comes in the same claim")
        self.assertEqual([r for r, t in self.claim(y) if t == a], [], "A is at its limit")
        self.release(x)
        self.release(y)


if __name__ == "__main__":
    unittest.main(verbosity=2)
