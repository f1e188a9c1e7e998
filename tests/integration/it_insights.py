"""GET /v1/tenants/{t}/insights (CONTRACT 10, docs/insights.md).

- a seeded data set written by SQL with exact timestamps on a day of
  2024, where every number has a hand-computed answer: run counts, cycle
  time percentiles, approval latency by role, SLA breaches, exception
  categories, AI outcomes and override rate, connector error rates and
  latencies; the same answer from whole-day windows (the rollup), windows
  with partial edge days (rollup + raw facts) and a window inside one day
  (raw only); the workflow filter;
- runs made by the real engine (an http step to a local mock, an
  approval, a dead letter) show up in the numbers;
- an msp sees the rollup of its clients with a per-client breakdown equal
  to each client's own answer; a client cannot read its sibling (404); a
  client user is refused (403); bad parameters are 400."""
import json
import time
import unittest
import uuid

from mfengine import EngineEnv
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

D = "2024-03-10"


def ts(day_offset, h=0, m=0, s=0):
    """An SQL timestamptz literal D + day_offset days + h:m:s, UTC."""
    return f"('{D}T00:00:00Z'::timestamptz + interval '{day_offset} day {h} hour {m} minute {s} second')"


WFA = {"trigger": {"event": "ins.a"}, "steps": [
    {"id": "call", "type": "http", "connector": "crm", "method": "GET", "path": "/x"},
    {"id": "triage", "type": "ai", "connector": "llm", "task": "classify", "labels": ["a", "b"],
     "prompt": "p", "model": "m"},
    {"id": "ask", "type": "approval", "assignee_role": "finance", "sla": "PT1H"}]}
WFB = {"trigger": {"event": "ins.b"}, "steps": [
    {"id": "fetch", "type": "http", "connector": "erp", "method": "GET", "path": "/y"}]}


def seed(env, tid):
    """The known-answer data set of the module docstring in tid's schema."""
    s = env.tenant_schema(tid)
    env.install("wfa", WFA, tid=tid)
    env.install("wfb", WFB, tid=tid)
    runs = {}
    # name: (workflow, created (h), state, cycle s or None, day, error code)
    spec = {"r1": ("wfa", 1, "succeeded", 10, 0, None), "r2": ("wfa", 2, "succeeded", 20, 0, None),
            "r3": ("wfa", 3, "failed", 30, 0, "http_status"), "r4": ("wfa", 4, "cancelled", 40, 0, None),
            "r5": ("wfa", 5, "running", None, 0, None), "r6": ("wfb", 6, "succeeded", 50, 0, None),
            "r7": ("wfb", 1, "failed", 60, 1, "timeout")}
    values = []
    for name, (wf, h, state, cyc, day, code) in spec.items():
        rid = str(uuid.uuid4())
        runs[name] = rid
        fin = f"{ts(day, h, 0, cyc)}" if cyc is not None else "NULL"
        err = f"'{{\"code\": \"{code}\"}}'" if code else "NULL"
        values.append(f"('{rid}', '{wf}', 1, '{state}', '{{}}', 'test', {ts(day, h)}, {fin}, {err})")
    env.psql(f"INSERT INTO {s}.runs (id, workflow, version, state, ctx, created_by, created_at, finished_at, error) "
             f"VALUES {', '.join(values)}")

    def step(run, seq, name, typ, state, at, ms=None, err=None, out=None):
        summ = f"'{{\"duration_ms\": {ms}}}'" if ms is not None else "NULL"
        e = f"'{{\"code\": \"{err}\"}}'" if err else "NULL"
        o = f"'{json.dumps(out)}'" if out else "NULL"
        return (f"('{runs[run]}', {seq}, '{name}', '{typ}', 1, '{state}', {at}, {at}, {o}, {e}, {summ})")

    rows = [
        step("r1", 1, "call", "http", "succeeded", ts(0, 1, 0, 1), 100),
        step("r2", 1, "call", "http", "retrying", ts(0, 2, 0, 1), 200, "http_status"),
        step("r2", 2, "call", "http", "failed", ts(0, 2, 0, 5), 300, "http_status"),
        step("r2", 3, "call", "http", "succeeded", ts(0, 2, 0, 8), 400),
        step("r3", 1, "call", "http", "failed", ts(0, 3, 0, 1), 500, "http_status"),
        step("r7", 1, "fetch", "http", "failed", ts(1, 1, 0, 1), 1000, "timeout"),
        step("r1", 2, "triage", "ai", "succeeded", ts(0, 1, 0, 2), 800, None, {"outcome": "auto"}),
        step("r4", 1, "triage", "ai", "succeeded", ts(0, 4, 0, 2), 1000, None, {"outcome": "rejected"}),
        step("r5", 1, "triage", "ai", "succeeded", ts(0, 5, 0, 2), 700, None, {"outcome": "accepted"}),
        # an AI review: the waiting row with the call, decided below
        step("r2", 4, "triage", "ai", "waiting", ts(0, 2, 0, 9), 900, None, {"draft": {}}),
    ]
    env.psql(f"INSERT INTO {s}.run_steps (run_id, seq, step, type, attempt, state, started_at, finished_at, "
             f"output, error, summary) VALUES {', '.join(rows)}")
    # decided as eng_apply writes it: the final row without a summary
    env.psql(f"""INSERT INTO {s}.run_steps AS x (run_id, seq, step, type, attempt, state, started_at, finished_at,
                 output, error, summary) VALUES ('{runs["r2"]}', 4, 'triage', 'ai', 1, 'succeeded', {ts(0, 2, 0, 9)},
                 {ts(0, 2, 0, 15)}, '{{"outcome": "edited"}}', NULL, NULL)
                 ON CONFLICT (run_id, seq) DO UPDATE SET state = EXCLUDED.state, finished_at = EXCLUDED.finished_at,
                 output = EXCLUDED.output, error = EXCLUDED.error, summary = EXCLUDED.summary""")

    def task(run, role, created, due, state, decided, escalated=False):
        return (f"('{uuid.uuid4()}', '{runs[run]}', 'ask', 't', '{role}', '{state}', {due}, {str(escalated).lower()}, "
                f"{decided}, {created})")

    tasks = [
        task("r1", "finance", ts(0, 1), ts(0, 2), "approved", ts(0, 1, 30)),
        task("r2", "finance", ts(0, 2), ts(0, 3), "rejected", ts(0, 4)),
        task("r3", "it", ts(0, 3), ts(0, 3, 30), "expired", "NULL"),
        task("r4", "it", ts(0, 4), ts(0, 6), "approved", ts(0, 5), True),
        task("r6", "finance", ts(0, 6), ts(0, 7), "approved", ts(0, 6, 10)),
    ]
    env.psql(f"INSERT INTO {s}.tasks (id, run_id, step, title, assignee_role, state, due_at, escalated, "
             f"decided_at, created_at) VALUES {', '.join(tasks)}")
    # an open task, closed by an UPDATE as the engine does
    open_id = str(uuid.uuid4())
    env.psql(f"INSERT INTO {s}.tasks (id, run_id, step, title, assignee_role, state, due_at, created_at) "
             f"VALUES ('{open_id}', '{runs['r5']}', 'ask', 't', 'finance', 'open', {ts(0, 6)}, {ts(0, 5)})")
    return runs, open_id


def pct(a, p):
    a = sorted(a)
    pos = p * (len(a) - 1)
    lo = int(pos)
    return a[lo] if lo + 1 >= len(a) else a[lo] + (a[lo + 1] - a[lo]) * (pos - lo)


class Insights(unittest.TestCase):
    config = None

    @classmethod
    def setUpClass(cls):
        cls.env = EngineEnv(config=cls.config)
        p = cls.env.p
        cls.a = cls.env.tid
        cls.b = p.create_client(cls.env.msp["id"], "ins-b")["id"]
        cls.a_tok = p.token(cls.a, ["client_admin"])
        cls.a_user = p.token(cls.a, ["client_user"])
        cls.b_tok = p.token(cls.b, ["client_admin"])
        cls.op_tok = p.token(cls.env.msp["id"], ["msp_operator"])
        cls.runs, cls.open_task = seed(cls.env, cls.a)
        # client B: two runs and one decided task on day D
        sb = cls.env.tenant_schema(cls.b)
        cls.env.install("wfb", WFB, tid=cls.b)
        b1, b2 = str(uuid.uuid4()), str(uuid.uuid4())
        cls.env.psql(f"""INSERT INTO {sb}.runs (id, workflow, version, state, ctx, created_by, created_at, finished_at)
            VALUES ('{b1}', 'wfb', 1, 'succeeded', '{{}}', 't', {ts(0, 8)}, {ts(0, 8, 0, 5)}),
                   ('{b2}', 'wfb', 1, 'succeeded', '{{}}', 't', {ts(0, 9)}, {ts(0, 9, 0, 15)});
            INSERT INTO {sb}.tasks (id, run_id, step, title, assignee_role, state, due_at, decided_at, created_at)
            VALUES ('{uuid.uuid4()}', '{b1}', 'ask', 't', 'finance', 'approved', {ts(0, 9)}, {ts(0, 8, 20)},
                    {ts(0, 8)})""")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def get(self, tid, query, token=None):
        return api(self.env.port, "GET", f"/v1/tenants/{tid}/insights?{query}", token or self.a_tok)

    def ok(self, tid, query, token=None):
        r = self.get(tid, query, token)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    def check_full_day_set(self, got, wf=None):
        """The answer for a window covering both seeded days."""
        if wf == "wfa":
            runs = {"started": 5, "succeeded": 2, "failed": 1, "cancelled": 1, "dead_lettered": 2}
            cyc = [10000, 20000, 30000, 40000]
        else:
            runs = {"started": 7, "succeeded": 3, "failed": 2, "cancelled": 1, "dead_lettered": 3}
            cyc = [10000, 20000, 30000, 40000, 50000, 60000]
        self.assertEqual(got["runs"], runs)
        ct = got["cycle_time_ms"]
        self.assertEqual((ct["count"], ct["exact"]), (len(cyc), True))
        for k, p in (("p50", .5), ("p90", .9), ("p99", .99)):
            self.assertAlmostEqual(ct[k], pct(cyc, p), places=3, msg=k)
        # by hand: wfa-only 25000 / 37000 / 39700; all 35000 / 55000 / 59500
        self.assertEqual((ct["p50"], ct["p90"], ct["p99"]),
                         (25000, 37000, 39700) if wf == "wfa" else (35000, 55000, 59500))
        appr = got["approval_latency_ms"]
        fin = [1800000, 7200000] + ([] if wf == "wfa" else [600000])
        self.assertEqual(appr["finance"]["count"], len(fin))
        self.assertAlmostEqual(appr["finance"]["p50"], pct(fin, .5))
        self.assertAlmostEqual(appr["finance"]["p90"], pct(fin, .9))
        self.assertEqual((appr["it"]["count"], appr["it"]["p50"], appr["it"]["p90"]), (1, 3600000, 3600000))
        sla = got["sla"]
        closed = 4 if wf == "wfa" else 5
        self.assertEqual(sla["total"], {"tasks_closed": closed, "breached": 3, "late": 1, "expired": 1,
                                        "escalated": 1, "breach_rate": round(3 / closed, 6)})
        self.assertEqual(sla["by_role"]["it"], {"tasks_closed": 2, "breached": 2, "late": 0, "expired": 1,
                                                "escalated": 1, "breach_rate": 1.0})
        self.assertEqual(sla["by_role"]["finance"]["breached"], 1)
        self.assertEqual(got["exceptions"], [{"code": "http_status", "count": 2}]
                         + ([] if wf == "wfa" else [{"code": "timeout", "count": 1}]))
        self.assertEqual(got["ai"], {"answers": 4, "auto": 1, "accepted": 1, "edited": 1, "rejected": 1,
                                     "expired": 0, "reviewed": 3, "overridden": 2, "override_rate": 0.5,
                                     "review_override_rate": 0.666667})
        con = got["connectors"]
        self.assertEqual((con["crm"]["calls"], con["crm"]["errors"], con["crm"]["error_rate"]), (5, 3, 0.6))
        self.assertEqual((con["crm"]["latency_ms"]["p50"], con["crm"]["latency_ms"]["p90"]), (300, 460))
        # the edited review's call survived its row's update
        self.assertEqual((con["llm"]["calls"], con["llm"]["errors"], con["llm"]["latency_ms"]["p50"],
                          con["llm"]["latency_ms"]["p90"]), (4, 0, 850, 970))
        if wf == "wfa":
            self.assertNotIn("erp", con)
        else:
            self.assertEqual((con["erp"]["calls"], con["erp"]["errors"], con["erp"]["error_rate"]), (1, 1, 1.0))

    def test_known_answers_whole_days_edges_and_inside_one_day(self):
        q_days = f"from={D}T00:00:00Z&to=2024-03-12T00:00:00Z"
        whole = self.ok(self.a, q_days)
        self.check_full_day_set(whole)
        self.assertEqual((whole["from"], whole["to"], whole["workflow"]),
                         ("2024-03-10T00:00:00.000Z", "2024-03-12T00:00:00.000Z", None))
        # partial edge days on both sides: raw facts + the rollup's whole day
        edges = self.ok(self.a, "from=2024-03-09T22:30:00Z&to=2024-03-11T12:00:00%2B02:00")
        self.check_full_day_set(edges)
        self.assertEqual(edges["to"], "2024-03-11T10:00:00.000Z")
        for k in ("runs", "cycle_time_ms", "approval_latency_ms", "sla", "exceptions", "ai", "connectors"):
            self.assertEqual(whole[k], edges[k], k)
        # every grain: raw 10:20-11:00, hours to midnight, days to March,
        # March from the month rollup, April's days, hours and raw minutes
        months = self.ok(self.a, "from=2024-02-15T10:20:00Z&to=2024-04-20T05:30:00Z")
        self.check_full_day_set(months)
        s = self.env.tenant_schema(self.a)
        spans = self.env.psql(f"SET TimeZone = 'UTC'; SELECT string_agg(grain || ' ' || to_char(lo, 'MM-DD HH24:MI') "
                              f"|| ' ' || to_char(hi, 'MM-DD HH24:MI'), ', ') FROM {s}.insights_spans("
                              f"'2024-02-15T10:20:00Z', '2024-04-20T05:30:00Z')")
        self.assertEqual(spans, "raw 02-15 10:20 02-15 11:00, raw 04-20 05:00 04-20 05:30, "
                         "hour 02-15 11:00 02-16 00:00, hour 04-20 00:00 04-20 05:00, "
                         "day 02-16 00:00 03-01 00:00, day 04-01 00:00 04-20 00:00, "
                         "month 03-01 00:00 04-01 00:00")
        # the workflow filter
        self.check_full_day_set(self.ok(self.a, q_days + "&workflow=wfa"), "wfa")
        nothing = self.ok(self.a, q_days + "&workflow=nope")
        self.assertEqual(nothing["runs"], {"started": 0, "succeeded": 0, "failed": 0, "cancelled": 0,
                                           "dead_lettered": 0})
        self.assertEqual((nothing["cycle_time_ms"]["count"], nothing["cycle_time_ms"]["p50"]), (0, None))
        self.assertEqual((nothing["exceptions"], nothing["connectors"], nothing["ai"]["override_rate"]),
                         ([], {}, 0.0))
        # a window inside day D (raw facts only): 00:30 to 05:00 holds r1..r4
        # started and ended (10/20/30/40 s); t1, t2 decided and t3 expired (t4 at 05:00 is out)
        inside = self.ok(self.a, f"from={D}T00:30:00Z&to={D}T05:00:00Z")
        self.assertEqual(inside["runs"], {"started": 4, "succeeded": 2, "failed": 1, "cancelled": 1,
                                          "dead_lettered": 2})
        self.assertEqual((inside["cycle_time_ms"]["p50"], inside["cycle_time_ms"]["p90"]), (25000, 37000))
        self.assertEqual(inside["sla"]["total"]["tasks_closed"], 3)  # t4 closed at 05:00, outside
        self.assertNotIn("erp", inside["connectors"])
        # the second day alone: r7 only
        day2 = self.ok(self.a, "from=2024-03-11T00:00:00Z&to=2024-03-12T00:00:00Z")
        self.assertEqual(day2["runs"], {"started": 1, "succeeded": 0, "failed": 1, "cancelled": 0,
                                        "dead_lettered": 1})
        self.assertEqual(day2["exceptions"], [{"code": "timeout", "count": 1}])
        self.assertEqual(day2["cycle_time_ms"]["p99"], 60000)

    def test_closing_an_open_task_and_retrying_a_run_move_the_numbers(self):
        q = f"from={D}T00:00:00Z&to=2024-03-12T00:00:00Z&workflow=wfb"
        s = self.env.tenant_schema(self.a)
        before = self.ok(self.a, q)
        # r7 (wfb, failed on day 2) is retried: it is no longer failed
        self.env.psql(f"UPDATE {s}.runs SET state = 'running', finished_at = NULL WHERE id = '{self.runs['r7']}'")
        mid = self.ok(self.a, q)
        self.assertEqual(mid["runs"]["failed"], before["runs"]["failed"] - 1)
        self.assertEqual(mid["runs"]["dead_lettered"], before["runs"]["dead_lettered"])  # an event stays
        self.assertEqual(mid["cycle_time_ms"]["count"], before["cycle_time_ms"]["count"] - 1)
        self.env.psql(f"UPDATE {s}.runs SET state = 'failed', finished_at = {ts(1, 1, 0, 60)} "
                      f"WHERE id = '{self.runs['r7']}'")
        self.assertEqual(self.ok(self.a, q), before)

    def test_msp_rollup_and_breakdown_equal_the_clients_answers(self):
        q = f"from={D}T00:00:00Z&to=2024-03-12T00:00:00Z"
        msp = self.ok(self.env.msp["id"], q, self.op_tok)
        a, b = self.ok(self.a, q), self.ok(self.b, q, self.b_tok)
        self.assertNotIn("clients", a)
        by_id = {c["tenant_id"]: c for c in msp["clients"]}
        self.assertEqual(set(by_id), {self.a, self.b})
        for tid, own in ((self.a, a), (self.b, b)):
            c = dict(by_id[tid])
            self.assertEqual(c.pop("name"), "Eng-Client" if tid == self.a else "Ins-B")
            own = dict(own)
            self.assertEqual(c, own)
        self.assertEqual(msp["runs"], {"started": 9, "succeeded": 5, "failed": 2, "cancelled": 1,
                                       "dead_lettered": 3})
        cyc = [10000, 20000, 30000, 40000, 50000, 60000, 5000, 15000]
        ct = msp["cycle_time_ms"]
        self.assertEqual((ct["count"], ct["exact"]), (8, True))
        self.assertEqual((ct["p50"], ct["p90"]), (pct(cyc, .5), pct(cyc, .9)))  # 25000, 53000
        self.assertEqual((ct["p50"], ct["p90"]), (25000, 53000))
        fin = msp["approval_latency_ms"]["finance"]
        self.assertEqual((fin["count"], fin["p50"]), (4, pct([600000, 1800000, 7200000, 1200000], .5)))
        self.assertEqual(msp["sla"]["total"]["tasks_closed"], 6)

    def test_access_and_bad_parameters(self):
        q = f"from={D}T00:00:00Z&to=2024-03-12T00:00:00Z"
        # a sibling and an unknown tenant: 404 alike
        for tid in (self.b, str(uuid.uuid4())):
            r = self.get(tid, q)
            self.assertEqual((r.status, r.json()["code"]), (404, "not_found"), r.body)
        # a client user may not read insights
        self.assertEqual(self.get(self.a, q, self.a_user).status, 403)
        # the msp's operator reads its client
        self.assertEqual(self.get(self.a, q, self.op_tok).status, 200)
        bad = {"from=yesterday": "/query/from", "from=2024-02-30T00:00:00Z": "/query/from",
               "to=2024-03-10T00:00:00": "/query/to", "from=2024-03-10%2000:00:00Z": "/query/from",
               f"from={D}T05:00:00Z&to={D}T05:00:00Z": "/query/to",
               f"from={D}T05:00:00Z&to={D}T04:00:00Z": "/query/to",
               "from=2023-01-01T00:00:00Z&to=2024-03-10T00:00:00Z": "/query/to",
               q + "&workflow=Bad%20Name": "/query/workflow"}
        for query, path in bad.items():
            r = self.get(self.a, query)
            self.assertEqual(r.status, 400, query)
            body = r.json()
            self.assertEqual((r.headers.get("content-type"), body["code"], body["errors"][0]["path"]),
                             ("application/problem+json", "validation_failed", path), query)
        # defaults: the last 7 days
        d = self.ok(self.a, "")
        span = time.mktime(time.strptime(d["to"][:19], "%Y-%m-%dT%H:%M:%S")) - \
            time.mktime(time.strptime(d["from"][:19], "%Y-%m-%dT%H:%M:%S"))
        self.assertEqual(span, 7 * 86400)

    def test_live_runs_feed_the_numbers(self):
        """Runs of the real engine: an http call to a mock, an approval
        decided through the API, and a dead letter after a 404."""
        mock = MockServer({"/ok": lambda rec: Reply(200, {"ok": True}),
                           "/gone": lambda rec: Reply(404, {"error": "gone"})})
        try:
            tid = str(self.env.client["id"])
            self.env.connector("live", f"http://localhost:{mock.port}", tid=tid)
            flow = {"trigger": {"event": "ins.live"}, "steps": [
                {"id": "call", "type": "http", "connector": "live", "method": "GET", "path": "/{{ input.path }}"},
                {"id": "ok", "type": "approval", "assignee_role": "live_approver", "sla": "PT1H",
                 "on_timeout": "reject", "title": "ok?"}]}
            r = self.env.call("PUT", "/workflows/ins-live", flow, tid=tid)
            self.assertIn(r.status, (200, 201), r.body)
            t0 = time.time() - 1
            good = self.env.call("POST", "/workflows/ins-live/runs", {"input": {"path": "ok"}}, tid=tid).json()
            bad = self.env.call("POST", "/workflows/ins-live/runs", {"input": {"path": "gone"}}, tid=tid).json()
            approver = self.env.p.token(tid, ["live_approver"])

            def open_task():
                items = self.env.call("GET", "/tasks?state=open&limit=500", tid=tid).json()["items"]
                return next((t for t in items if t["run_id"] == good["id"]), None)
            task = wait_until(open_task, 20, 0.1)
            self.assertIsNotNone(task)
            r = self.env.call("POST", f"/tasks/{task['id']}/decision", {"decision": "approve"}, token=approver,
                              tid=tid)
            self.assertEqual(r.status, 200, r.body)

            def state(rid):
                return self.env.call("GET", f"/runs/{rid}", tid=tid).json()["state"]
            self.assertTrue(wait_until(lambda: state(good["id"]) == "succeeded" and state(bad["id"]) == "failed",
                                       20, 0.1))
            frm = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0))
            to = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 2))
            got = self.ok(self.a, f"from={frm}&to={to}&workflow=ins-live")
            self.assertEqual(got["runs"], {"started": 2, "succeeded": 1, "failed": 1, "cancelled": 0,
                                           "dead_lettered": 1})
            self.assertEqual(got["exceptions"], [{"code": "http_status", "count": 1}])
            live = got["connectors"]["live"]
            self.assertEqual((live["calls"], live["errors"], live["error_rate"]), (2, 1, 0.5))
            self.assertGreater(live["latency_ms"]["p90"], 0)
            self.assertEqual(got["approval_latency_ms"]["live_approver"]["count"], 1)
            self.assertEqual(got["sla"]["total"]["tasks_closed"], 1)
            self.assertEqual(got["cycle_time_ms"]["count"], 2)
            self.assertTrue(got["cycle_time_ms"]["exact"])
            # the rollup holds the live facts at each grain, once folded:
            # by the server's folder within a second, else by hand
            s = self.env.tenant_schema(tid)
            if self.config is None:
                self.assertTrue(wait_until(lambda: self.env.psql(
                    f"SELECT count(*) FROM {s}.insights_pending") == "0", 10, 0.1))
            else:
                self.env.psql("SELECT platform.insights_fold()")
            n = self.env.psql(f"SELECT string_agg(grain || '=' || n, ',' ORDER BY grain) FROM (SELECT grain, "
                              f"sum(n) AS n FROM {s}.insights_rollup WHERE workflow = 'ins-live' "
                              f"AND metric = 'call' GROUP BY 1) x")
            self.assertEqual(n, "day=2,hour=2,month=2")
        finally:
            mock.close()


class InsightsUnfolded(Insights):
    """Every test above again with the server's folder off
    (insights_fold_ms = 0): the facts stay in insights_pending and the
    answers are the same, since reads add the facts not folded yet."""
    config = {"insights_fold_ms": 0}

    def test_zz_folding_changes_no_answer(self):
        # fresh facts on day D+2 (test_live_runs folded what came before)
        for tid in (self.a, self.b):
            s = self.env.tenant_schema(tid)
            rows = ", ".join(f"('{uuid.uuid4()}', 'wfb', 1, 'succeeded', '{{}}', 't', {ts(2, h, 10)}, "
                             f"{ts(2, h, 10, 7 * h)})" for h in (1, 2, 3))
            self.env.psql(f"INSERT INTO {s}.runs (id, workflow, version, state, ctx, created_by, created_at, "
                          f"finished_at) VALUES {rows}")
        pending = {}
        for tid in (self.a, self.b):
            s = self.env.tenant_schema(tid)
            pending[tid] = int(self.env.psql(f"SELECT count(*) FROM {s}.insights_pending"))
        self.assertGreater(pending[self.a], 0)
        self.assertGreater(pending[self.b], 0)
        queries = [f"from={D}T00:00:00Z&to=2024-03-12T00:00:00Z",
                   f"from={D}T00:30:00Z&to=2024-03-11T05:45:00Z&workflow=wfa",
                   f"from=2024-02-01T00:00:00Z&to=2024-05-01T00:00:00Z",
                   f"from={D}T01:10:00Z&to={D}T01:50:00Z",
                   f"from=2024-03-12T00:00:00Z&to=2024-03-13T00:00:00Z",
                   f"from=2024-03-12T01:30:00Z&to=2024-03-12T03:20:00Z"]
        before = [self.ok(self.a, q) for q in queries] + [self.ok(self.env.msp["id"], queries[0], self.op_tok)]
        due = self.env.psql("SELECT count(*) FROM platform.insights_due")
        self.assertGreater(int(due), 0)
        folded = int(self.env.psql("SELECT platform.insights_fold()"))
        self.assertGreaterEqual(folded, pending[self.a] + pending[self.b])
        after = [self.ok(self.a, q) for q in queries] + [self.ok(self.env.msp["id"], queries[0], self.op_tok)]
        self.assertEqual(after, before)
        self.assertEqual(before[4]["runs"]["started"], 3)
        self.assertEqual((before[5]["runs"]["started"], before[5]["cycle_time_ms"]["count"]), (2, 2))
        for tid in (self.a, self.b):
            s = self.env.tenant_schema(tid)
            self.assertEqual(self.env.psql(f"SELECT count(*) FROM {s}.insights_pending"), "0")
            # the rollup now holds what was pending (all three grains)
            self.assertEqual(self.env.psql(f"SELECT count(DISTINCT grain) FROM {s}.insights_rollup"), "3")
        # nothing is pending: every schema is off the list
        self.assertEqual(self.env.psql("SELECT count(*) FROM platform.insights_due"), "0")


if __name__ == "__main__":
    unittest.main()
