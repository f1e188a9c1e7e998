"""The engine's routes end to end, real PostgreSQL and the real binary with
its engine running: definitions validated with exact JSON paths and
versioned immutably (a run stays on the version it started with while a
newer one is put), runs started, listed with filters, read with their
step timeline, cancelled and retried (and refused with 409 when their
state says so), approval tasks decided only by a holder of the assignee
role and only once, events starting the workflows they trigger with
Idempotency-Key replays, bad input refused with problem+json and nothing
changed, and tenants isolated from each other (404 outside reach, 403
inside reach without the permission)."""
import json
import threading
import time
import unittest
import uuid

from mfengine import RunReads
from mfidentity import Platform, api

PROBLEM = "application/problem+json"


def approval_flow(marker):
    """An approval, then a transform whose output says which version ran."""
    return {
        "trigger": {"event": "ea.approval.requested"},
        "steps": [
            {"id": "ask", "type": "approval", "assignee_role": "finance_approver", "sla": "PT1H",
             "on_timeout": "reject", "title": "Approve {{ input.what }}?"},
            {"id": "after", "type": "transform", "output": {"marker": marker}},
        ],
    }


TRANSFORM_ONLY = {
    "trigger": {"event": "ea.calc.requested"},
    "steps": [
        {"id": "double", "type": "transform", "output": {"n2": "input.n * 2"}},
        {"id": "plus", "type": "transform", "output": {"n3": "steps.double.output.n2 + 1"}},
    ],
}

# the second step divides by input.d: with d = 0 the run is dead-lettered there
FAILING = {
    "trigger": {"event": "ea.fail.requested"},
    "steps": [
        {"id": "first", "type": "transform", "output": {"ok": "true"}},
        {"id": "divide", "type": "transform", "output": {"q": "10 / input.d"}},
    ],
}

ORDERS = {
    "trigger": {"event": "ea.order.created", "when": "data.amount > 10"},
    "steps": [{"id": "note", "type": "transform", "output": {"amount": "data.amount"}}],
}


class EngineApiTest(RunReads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform(config={"auth_ip_rate": 1000000, "auth_ip_burst": 1000000, "engine_poll_ms": 200})
        p = cls.p
        cls.port = p.port
        cls.msp = p.create_tenant("msp", "ea-msp")
        cls.c1 = p.create_client(cls.msp["id"], "ea-c1")
        cls.c2 = p.create_client(cls.msp["id"], "ea-c2")
        cls.other = p.create_tenant("msp", "ea-other")
        big = {"rate_limit": {"window": "PT1M", "tenant_requests": 1000000, "client_requests": 1000000}}
        for t in (p.admin["tenant_id"], cls.msp["id"], cls.other["id"]):
            r = api(cls.port, "PUT", f"/v1/tenants/{t}/policy", p.admin_token, big)
            assert r.status == 200, r.body
        cls.operator = p.token(cls.msp["id"], ["msp_operator"])
        cls.c1_admin = p.token(cls.c1["id"], ["client_admin"])
        cls.c1_user = p.token(cls.c1["id"], ["client_user"])
        cls.approver = p.token(cls.c1["id"], ["finance_approver"])
        cls.c2_admin = p.token(cls.c2["id"], ["client_admin"])
        cls.other_admin = p.token(cls.other["id"], ["msp_admin"])
        time.sleep(1.2)   # cached plans expire (auth_cache_ttl_ms = 1000)
        cls.t = f"/v1/tenants/{cls.c1['id']}"

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    # ---- helpers ----

    def call(self, method, path, body=None, token=None, headers=None):
        return api(self.port, method, self.t + path, token or self.operator, body, headers)

    def problem(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertTrue(r.headers.get("content-type", "").startswith(PROBLEM), r.headers)
        b = r.json()
        self.assertEqual((b["status"], b["code"]), (status, code), b)
        self.assertIn("request_id", b)
        return b

    def put(self, name, definition, want=201):
        r = self.call("PUT", f"/workflows/{name}", definition)
        self.assertEqual(r.status, want, r.body)
        return r.json()

    def start(self, name, inp=None, token=None):
        r = self.call("POST", f"/workflows/{name}/runs", {"input": inp or {}}, token=token)
        self.assertEqual(r.status, 202, r.body)
        run = r.json()
        self.assertEqual(run["state"], "pending")
        self.assertEqual(r.headers["location"], f"{self.t}/runs/{run['id']}")
        return run

    def open_task(self, rid):
        run = self.wait_state(rid, ("waiting",))
        tasks = [t for t in run["tasks"] if t["state"] == "open"]
        self.assertEqual(len(tasks), 1, run)
        return tasks[0]

    def audit(self, action, target):
        return int(self.p.pg.psql(
            f"SELECT count(*) FROM platform.audit_events WHERE action = '{action}' AND target = '{target}'"))

    def count(self, table):
        schema = self.p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{self.c1['id']}'")
        return int(self.p.pg.psql(f"SELECT count(*) FROM {schema}.{table}"))

    # ---- definitions ----

    def test_validation_errors_carry_paths_and_store_nothing(self):
        bad = {"trigger": {"event": "ea.x.y"},
               "steps": [{"id": "a", "type": "transform", "output": {"v": "1"}, "next": "nowhere"},
                         {"id": "b", "type": "teleport"}]}
        b = self.problem(self.call("PUT", "/workflows/ea-bad", bad), 400, "validation_failed")
        paths = [e["path"] for e in b["errors"]]
        self.assertIn("/steps/0/next", paths)
        self.assertIn("/steps/1/type", paths)
        for e in b["errors"]:
            self.assertTrue(e["message"], e)
        # nothing stored
        self.problem(self.call("GET", "/workflows/ea-bad"), 404, "not_found")
        # not JSON, not an object, a bad name
        r = api(self.port, "PUT", self.t + "/workflows/ea-bad", self.operator, b"{nope",
                {"Content-Type": "application/json"})
        self.problem(r, 400, "invalid_json")
        self.problem(self.call("PUT", "/workflows/ea-bad", [1]), 400, "validation_failed")
        b = self.problem(self.call("PUT", "/workflows/Bad%20Name", TRANSFORM_ONLY), 400, "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/name")
        r = api(self.port, "PUT", self.t + "/workflows/ea-bad", self.operator, json.dumps(TRANSFORM_ONLY).encode(),
                {"Content-Type": "text/plain"})
        self.assertEqual(r.status, 415, r.body)
        self.problem(self.call("GET", "/workflows/ea-bad"), 404, "not_found")

    def test_versions_are_immutable(self):
        v1 = self.put("ea-versions", approval_flow("1"))
        self.assertEqual((v1["name"], v1["version"], v1["trigger_event"]),
                         ("ea-versions", 1, "ea.approval.requested"))
        self.assertEqual(v1["definition"], approval_flow("1"))
        # the same definition (other key order and spacing): 200, same version, no new row
        same = json.loads(json.dumps(approval_flow("1"), sort_keys=True))
        again = self.put("ea-versions", same, want=200)
        self.assertEqual(again["version"], 1)
        v2 = self.put("ea-versions", approval_flow("2"))
        self.assertEqual(v2["version"], 2)
        r = self.call("GET", "/workflows/ea-versions/versions/1")
        self.assertEqual((r.status, r.json()["definition"]), (200, approval_flow("1")))
        r = self.call("GET", "/workflows/ea-versions")
        self.assertEqual((r.status, r.json()["version"], r.json()["versions"]), (200, 2, 2))
        self.assertEqual(r.json()["definition"], approval_flow("2"))
        self.problem(self.call("GET", "/workflows/ea-versions/versions/3"), 404, "not_found")
        self.problem(self.call("GET", "/workflows/ea-versions/versions/zero"), 404, "not_found")
        self.problem(self.call("GET", "/workflows/ea-none"), 404, "not_found")
        self.assertEqual(self.audit("workflow.version_created", "workflow:ea-versions"), 2)

    def test_workflow_list_pages(self):
        for n in ("ea-page-a", "ea-page-b", "ea-page-c"):
            self.assertIn(self.call("PUT", f"/workflows/{n}", TRANSFORM_ONLY).status, (200, 201))
        seen, cursor = [], None
        while True:
            q = "/workflows?limit=2" + (f"&cursor={cursor}" if cursor else "")
            r = self.call("GET", q)
            self.assertEqual(r.status, 200, r.body)
            b = r.json()
            self.assertLessEqual(len(b["items"]), 2)
            seen += [w["name"] for w in b["items"]]
            cursor = b["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(seen, sorted(seen))
        self.assertEqual(len(seen), len(set(seen)))
        for n in ("ea-page-a", "ea-page-b", "ea-page-c"):
            self.assertIn(n, seen)
        self.problem(self.call("GET", "/workflows?limit=0"), 400, "validation_failed")

    # ---- runs ----

    def test_transform_run_succeeds_with_timeline(self):
        self.put("ea-calc", TRANSFORM_ONLY)
        run = self.start("ea-calc", {"n": 20})
        self.assertEqual((run["workflow"], run["version"]), ("ea-calc", 1))
        done = self.wait_state(run["id"], ("succeeded", "failed"))
        self.assertEqual(done["state"], "succeeded", done)
        self.assertEqual(done["input"], {"n": 20})
        self.assertIsNotNone(done["finished_at"])
        steps = done["steps"]
        self.assertEqual([(s["step"], s["type"], s["attempt"], s["state"]) for s in steps],
                         [("double", "transform", 1, "succeeded"), ("plus", "transform", 1, "succeeded")])
        self.assertEqual(steps[1]["output"], {"n3": 41})
        for s in steps:
            for k in ("started_at", "finished_at", "error", "summary"):
                self.assertIn(k, s)
            self.assertTrue(s["started_at"].endswith("Z"))
        # list filters
        r = self.call("GET", "/runs?workflow=ea-calc&state=succeeded")
        self.assertEqual(r.status, 200, r.body)
        self.assertIn(run["id"], [x["id"] for x in r.json()["items"]])
        self.assertTrue(all(x["workflow"] == "ea-calc" and x["state"] == "succeeded" for x in r.json()["items"]))
        r = self.call("GET", "/runs?state=failed")
        self.assertNotIn(run["id"], [x["id"] for x in r.json()["items"]])
        r = self.call("GET", "/runs?workflow=ea-other-name")
        self.assertEqual(r.json()["items"], [])
        self.problem(self.call("GET", "/runs?state=bogus"), 400, "validation_failed")
        self.problem(self.call("GET", "/runs?workflow=NOT%20A%20NAME"), 400, "validation_failed")
        self.problem(self.call("GET", "/runs?cursor=abc"), 400, "validation_failed")
        # a finished run: cancel 409, retry 409
        self.problem(self.call("POST", f"/runs/{run['id']}/cancel"), 409, "run_finished")
        self.problem(self.call("POST", f"/runs/{run['id']}/retry"), 409, "run_not_failed")

    def test_run_list_pages(self):
        self.put("ea-paged", TRANSFORM_ONLY)
        ids = {self.start("ea-paged", {"n": i})["id"] for i in range(5)}
        seen, cursor = [], None
        while True:
            r = self.call("GET", "/runs?workflow=ea-paged&limit=2" + (f"&cursor={cursor}" if cursor else ""))
            self.assertEqual(r.status, 200, r.body)
            seen += [x["id"] for x in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(set(seen), ids)
        self.assertEqual(len(seen), 5)

    def test_start_run_bad_input(self):
        self.put("ea-input", TRANSFORM_ONLY)
        before = self.count("runs")
        b = self.problem(self.call("POST", "/workflows/ea-input/runs", {"input": [1]}), 400, "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/input")
        b = self.problem(self.call("POST", "/workflows/ea-input/runs", {"inputs": {}}), 400, "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/inputs")
        self.problem(self.call("POST", "/workflows/ea-input/runs", {"input": {"s": "x" * 300000}}), 413,
                     "payload_too_large")
        self.problem(self.call("POST", "/workflows/ea-missing/runs", {"input": {}}), 404, "not_found")
        self.assertEqual(self.count("runs"), before)
        # no body at all: an empty input
        r = self.call("POST", "/workflows/ea-input/runs")
        self.assertEqual(r.status, 202, r.body)

    def test_run_pinned_to_its_version_and_task_decisions(self):
        self.put("ea-pinned", approval_flow("1"))
        run = self.start("ea-pinned", {"what": "the budget"})
        task = self.open_task(run["id"])
        self.assertEqual((task["assignee_role"], task["title"], task["step"]),
                         ("finance_approver", "Approve the budget?", "ask"))
        # a new version while the run waits
        self.assertEqual(self.put("ea-pinned", approval_flow("2"))["version"], 2)
        r = self.call("GET", "/tasks?state=open")
        self.assertIn(task["id"], [t["id"] for t in r.json()["items"]])
        r = self.call("GET", f"/tasks/{task['id']}", token=self.approver)
        self.assertEqual((r.status, r.json()["state"]), (200, "open"))
        # the wrong roles, an operator and an admin included
        for tok in (self.c1_user, self.c1_admin, self.operator):
            self.problem(self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=tok),
                         403, "not_assignee")
        # bad decisions change nothing
        self.problem(self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "maybe"},
                               token=self.approver), 400, "validation_failed")
        self.problem(self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve", "x": 1},
                               token=self.approver), 400, "validation_failed")
        self.problem(self.call("POST", f"/tasks/{uuid.uuid4()}/decision", {"decision": "approve"},
                               token=self.approver), 404, "not_found")
        r = self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve", "comment": "fine"},
                      token=self.approver)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual((r.json()["state"], r.json()["comment"]), ("approved", "fine"))
        self.problem(self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "reject"},
                               token=self.approver), 409, "task_closed")
        done = self.wait_state(run["id"], ("succeeded", "failed"))
        self.assertEqual((done["state"], done["version"]), ("succeeded", 1), done)
        after = [s for s in done["steps"] if s["step"] == "after"]
        self.assertEqual(after[0]["output"], {"marker": 1})
        ask = [s for s in done["steps"] if s["step"] == "ask"]
        self.assertEqual(ask[-1]["output"]["decision"], "approved")
        self.assertEqual(self.audit("task.decided", f"task:{task['id']}"), 1)
        # a new run takes version 2
        run2 = self.start("ea-pinned", {"what": "more"})
        self.assertEqual(run2["version"], 2)
        self.assertEqual(self.call("POST", f"/runs/{run2['id']}/cancel").status, 200)

    def test_concurrent_decisions_exactly_once(self):
        self.put("ea-race", approval_flow("r"))
        run = self.start("ea-race", {"what": "x"})
        task = self.open_task(run["id"])
        results = []

        def decide(d):
            r = self.call("POST", f"/tasks/{task['id']}/decision", {"decision": d}, token=self.approver)
            results.append(r.status)

        threads = [threading.Thread(target=decide, args=("approve" if i % 2 else "reject",)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [200] + [409] * 7, results)
        self.assertEqual(self.audit("task.decided", f"task:{task['id']}"), 1)
        self.wait_state(run["id"], ("succeeded",))

    def test_cancel(self):
        self.put("ea-cancel", approval_flow("c"))
        run = self.start("ea-cancel", {"what": "x"})
        task = self.open_task(run["id"])
        self.problem(self.call("POST", f"/runs/{run['id']}/retry"), 409, "run_not_failed")
        # a client user may cancel (runs permission)
        r = self.call("POST", f"/runs/{run['id']}/cancel", token=self.c1_user)
        self.assertEqual((r.status, r.json()["state"]), (200, "cancelled"), r.body)
        self.problem(self.call("POST", f"/runs/{run['id']}/cancel"), 409, "run_finished")
        got = self.get_run(run["id"])
        self.assertEqual(got["state"], "cancelled")
        self.assertEqual([t["state"] for t in got["tasks"]], ["cancelled"])
        self.assertNotIn("waiting", [s["state"] for s in got["steps"]])
        self.problem(self.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"},
                               token=self.approver), 409, "task_closed")
        self.assertEqual(self.audit("run.cancelled", f"run:{run['id']}"), 1)
        self.problem(self.call("POST", f"/runs/{uuid.uuid4()}/cancel"), 404, "not_found")
        self.problem(self.call("POST", "/runs/not-a-uuid/cancel"), 404, "not_found")
        time.sleep(0.5)
        self.assertEqual(self.get_run(run["id"])["state"], "cancelled")

    def test_retry_resumes_at_the_failed_step(self):
        self.put("ea-fail", FAILING)
        run = self.start("ea-fail", {"d": 0})
        failed = self.wait_state(run["id"], ("failed", "succeeded"))
        self.assertEqual((failed["state"], failed["step"]), ("failed", "divide"), failed)
        self.assertEqual(failed["error"]["step"], "divide")
        r = self.call("GET", "/runs?state=failed&workflow=ea-fail")
        self.assertEqual([x["id"] for x in r.json()["items"]], [run["id"]])
        r = self.call("POST", f"/runs/{run['id']}/retry")
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual((r.json()["state"], r.json()["step"], r.json()["attempt"], r.json()["error"]),
                         ("pending", "divide", 0, None))
        self.assertEqual(self.audit("run.retried", f"run:{run['id']}"), 1)
        again = self.wait_state(run["id"], ("failed", "succeeded"))
        self.assertEqual(again["state"], "failed")
        names = [s["step"] for s in again["steps"]]
        # "first" ran once: the retry began at "divide"
        self.assertEqual(names, ["first", "divide", "divide"], again["steps"])
        self.problem(self.call("POST", f"/runs/{uuid.uuid4()}/retry"), 404, "not_found")

    # ---- events ----

    def test_events_start_runs_idempotently(self):
        self.put("ea-orders", ORDERS)
        ev = "/events"
        r = self.call("POST", ev, {"type": "ea.order.created", "data": {"amount": 20}})
        self.assertEqual(r.status, 202, r.body)
        b = r.json()
        self.assertEqual(len(b["run_ids"]), 1)
        uuid.UUID(b["event_id"])
        run = self.wait_state(b["run_ids"][0], ("succeeded", "failed"))
        self.assertEqual((run["state"], run["event_id"]), ("succeeded", b["event_id"]))
        r = self.call("POST", ev, {"type": "ea.order.created", "data": {"amount": 5}})
        self.assertEqual((r.status, r.json()["run_ids"]), (202, []))
        # an event no workflow listens to is still accepted
        r = self.call("POST", ev, {"type": "ea.nobody.listens"}, token=self.c1_user)
        self.assertEqual((r.status, r.json()["run_ids"]), (202, []))
        # Idempotency-Key: same key and body -> the same answer, no new runs
        key = {"Idempotency-Key": "order-" + uuid.uuid4().hex}
        body = {"type": "ea.order.created", "data": {"amount": 99}}
        first = self.call("POST", ev, body, headers=key)
        self.assertEqual(first.status, 202, first.body)
        runs, events = self.count("runs"), self.count("events")
        for _ in range(3):
            again = self.call("POST", ev, body, headers=key)
            self.assertEqual(again.status, 202, again.body)
            self.assertEqual(again.json(), first.json())
        self.assertEqual((self.count("runs"), self.count("events")), (runs, events))
        # the same key with another body
        self.problem(self.call("POST", ev, {"type": "ea.order.created", "data": {"amount": 98}}, headers=key),
                     422, "idempotency_key_reused")
        self.assertEqual((self.count("runs"), self.count("events")), (runs, events))

    def test_concurrent_idempotent_events(self):
        self.put("ea-orders2", dict(ORDERS, trigger={"event": "ea.order.racing"}))
        key = {"Idempotency-Key": "race-" + uuid.uuid4().hex}
        body = {"type": "ea.order.racing", "data": {"amount": 50}}
        out = []

        def post():
            out.append(self.call("POST", "/events", body, headers=key))

        threads = [threading.Thread(target=post) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual({r.status for r in out}, {202}, [r.body for r in out])
        self.assertEqual(len({r.body for r in out}), 1)
        self.assertEqual(len(out[0].json()["run_ids"]), 1)

    def test_event_bad_input(self):
        events, runs = self.count("events"), self.count("runs")
        b = self.problem(self.call("POST", "/events", {"type": "NotAnEvent", "data": {}}), 400, "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/type")
        self.problem(self.call("POST", "/events", {"data": {}}), 400, "validation_failed")
        b = self.problem(self.call("POST", "/events", {"type": "ea.order.created", "data": 3}), 400,
                         "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/data")
        b = self.problem(self.call("POST", "/events", {"type": "ea.order.created", "extra": 1}), 400,
                         "validation_failed")
        self.assertEqual(b["errors"][0]["path"], "/extra")
        self.problem(self.call("POST", "/events", {"type": "ea.order.created", "data": {"s": "y" * 300000}}),
                     413, "payload_too_large")
        self.problem(self.call("POST", "/events", {"type": "ea.order.created"}, headers={"Idempotency-Key": ""}),
                     400, "validation_failed")
        r = api(self.port, "POST", self.t + "/events", self.operator, b"", {"Content-Type": "application/json"})
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual((self.count("events"), self.count("runs")), (events, runs))

    # ---- permissions and isolation ----

    def test_permissions_and_isolation(self):
        self.put("ea-iso", TRANSFORM_ONLY)
        run = self.start("ea-iso", {"n": 1}, token=self.c1_user)
        self.wait_state(run["id"], ("succeeded",))
        # a client user runs workflows but does not write them
        self.problem(self.call("PUT", "/workflows/ea-iso", TRANSFORM_ONLY, token=self.c1_user), 403, "forbidden")
        # an approver-only token reads, but neither starts runs nor posts events
        self.assertEqual(self.call("GET", f"/runs/{run['id']}", token=self.approver).status, 200)
        self.problem(self.call("POST", "/workflows/ea-iso/runs", {}, token=self.approver), 403, "forbidden")
        self.problem(self.call("POST", "/events", {"type": "ea.x.y"}, token=self.approver), 403, "forbidden")
        missing = api(self.port, "GET", f"/v1/tenants/{uuid.uuid4()}/runs", self.other_admin).json()
        # outside reach: another msp, a sibling client -> 404 like a missing tenant
        for tok in (self.other_admin, self.c2_admin):
            for method, path in (("GET", f"/runs/{run['id']}"), ("GET", "/runs"), ("GET", "/workflows"),
                                 ("GET", "/tasks"), ("POST", f"/runs/{run['id']}/cancel")):
                r = self.call(method, path, token=tok)
                b = self.problem(r, 404, "not_found")
                self.assertEqual((b["detail"], b["title"]), (missing["detail"], missing["title"]))
        # the sibling's own schema does not hold c1's run
        r = api(self.port, "GET", f"/v1/tenants/{self.c2['id']}/runs/{run['id']}", self.c2_admin)
        self.problem(r, 404, "not_found")
        self.assertEqual(api(self.port, "GET", f"/v1/tenants/{self.c2['id']}/runs", self.c2_admin).json()["items"],
                         [])
        # the msp reaches its client
        self.assertEqual(api(self.port, "GET", f"{self.t}/runs/{run['id']}", self.operator).status, 200)
        # tenants that run no workflows
        for t in (self.p.admin["tenant_id"],):
            r = api(self.port, "GET", f"/v1/tenants/{t}/workflows", self.p.admin_token)
            self.problem(r, 404, "not_found")
        # no token
        self.assertEqual(api(self.port, "GET", f"{self.t}/runs").status, 401)


if __name__ == "__main__":
    unittest.main(verbosity=2)
