"""Telemetry: OTLP/HTTP JSON spans for request -> run -> step -> connector
call sent to a local mock collector, forming one trace that continues the
caller's traceparent and that the peer sees; no export without
otlp_endpoint; a dead collector neither slows nor breaks requests (its
spans are counted as dropped); the engine and connector metrics appear
and move; and every metric the Grafana dashboard queries is one mspflow
exports."""
import json
import os
import re
import secrets
import time
import unittest
import uuid

from mfengine import EngineEnv, RunReads
from mfharness import request
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def metrics(port):
    r = request(port, "GET", "/metrics")
    assert r.status == 200, r.status
    return r.body.decode()


def value(text, name, **labels):
    """The sample of name whose labels include labels (None if absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(3))
    return None


class TelemetryTest(RunReads, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.collector = MockServer({"/v1/traces": lambda rec: Reply(200, {})})
        cls.peer = MockServer({"/hook": lambda rec: Reply(200, {"ok": True}, delay=0.05)})
        cls.env = env = EngineEnv(config={
            "otlp_endpoint": f"http://127.0.0.1:{cls.collector.port}/", "otlp_service_name": "mspflow-test",
            "otlp_flush_ms": 100, "engine_gauge_ms": 200})
        env.connector("peer", f"http://localhost:{cls.peer.port}", kind="psa")
        r = env.call("PUT", "/workflows/traced", {"trigger": {"event": "tele.go"}, "steps": [
            {"id": "prep", "type": "transform", "output": {"n": "data.n + 1"}},
            {"id": "call", "type": "http", "connector": "peer", "method": "POST", "path": "/hook",
             "body": {"n": "{{ steps.prep.output.n }}"}}]})
        assert r.status in (200, 201), r.body

    @classmethod
    def tearDownClass(cls):
        rcs = cls.env.close()
        cls.collector.close()
        cls.peer.close()
        assert all(rc == 0 for rc in rcs), rcs

    def spans(self):
        out = []
        for rec in self.collector.seen("/v1/traces"):
            doc = rec.json()
            for rs in doc["resourceSpans"]:
                svc = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}["service.name"]
                for ss in rs["scopeSpans"]:
                    for s in ss["spans"]:
                        s["_service"] = svc["stringValue"]
                        s["_attrs"] = {a["key"]: list(a["value"].values())[0] for a in s["attributes"]}
                        out.append(s)
        return out

    def test_one_trace_from_request_to_connector_call(self):
        trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
        admin = self.env.p.servers[0].admin_port
        before = metrics(admin)
        r = self.env.call("POST", "/events", {"type": "tele.go", "data": {"n": 1}},
                          headers={"Idempotency-Key": str(uuid.uuid4()),
                                   "traceparent": f"00-{trace_id}-{caller}-01"})
        self.assertEqual(r.status, 202, r.body)
        rid = r.json()["run_ids"][0]
        self.wait_state(rid, "succeeded")

        def trace():
            s = [x for x in self.spans() if x["traceId"] == trace_id]
            return s if any(x["name"].startswith("run ") for x in s) and any(
                x["kind"] == 3 for x in s) and any(x["kind"] == 2 for x in s) else None
        spans = wait_until(trace, 10, 0.1)
        self.assertTrue(spans, f"spans of trace {trace_id}: {json.dumps([(x['name'], x['kind']) for x in self.spans() if x['traceId'] == trace_id])} {metrics(self.env.p.servers[0].admin_port)[-400:]}")
        by_id = {s["spanId"]: s for s in spans}
        req = [s for s in spans if s["kind"] == 2 and s["_attrs"].get("http.route", "").endswith("/events")]
        self.assertEqual(len(req), 1, spans)
        req = req[0]
        self.assertEqual(req["parentSpanId"], caller, "the request span's parent is the caller's span")
        self.assertEqual(req["_attrs"]["http.response.status_code"], "202")
        self.assertEqual(req["_service"], "mspflow-test")
        run = [s for s in spans if s["name"] == "run traced"]
        self.assertEqual(len(run), 1, spans)
        run = run[0]
        self.assertEqual(run["parentSpanId"], req["spanId"], "the run continues the request's trace")
        self.assertEqual(run["_attrs"]["mspflow.run_id"], rid)
        self.assertEqual(run["status"]["code"], 1)
        steps = [s for s in spans if s["name"] == "step"]
        self.assertEqual({s["_attrs"]["mspflow.step.type"] for s in steps}, {"transform", "http"}, steps)
        for s in steps:
            self.assertEqual(s["parentSpanId"], run["spanId"])
            self.assertEqual(s["_attrs"]["mspflow.step.outcome"], "succeeded")
            self.assertEqual(s["_attrs"]["mspflow.step.attempt"], "1")
        http_step = next(s for s in steps if s["_attrs"]["mspflow.step.type"] == "http")
        call = [s for s in spans if s["kind"] == 3]
        self.assertEqual(len(call), 1, spans)
        call = call[0]
        self.assertEqual(call["parentSpanId"], http_step["spanId"], "the call is a child of its step")
        self.assertEqual(call["_attrs"]["mspflow.connector.kind"], "psa")
        self.assertEqual(call["_attrs"]["http.request.method"], "POST")
        self.assertEqual(call["_attrs"]["http.response.status_code"], "200")
        # what the peer received names the connector span as its parent
        got = [q for q in self.peer.seen("/hook") if q.header("Idempotency-Key") == f"{rid}:call"]
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0].header("traceparent"), f"00-{trace_id}-{call['spanId']}-01")
        # timing: each span inside its parent (1 ms slack for rounding), the call at least the peer's delay
        for s in spans:
            self.assertLessEqual(int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]), s)
        for child, parent in ((run, None), (http_step, run), (call, http_step)):
            if parent:
                self.assertGreaterEqual(int(child["startTimeUnixNano"]) + 1000000, int(parent["startTimeUnixNano"]))
                self.assertLessEqual(int(child["endTimeUnixNano"]), int(parent["endTimeUnixNano"]) + 1000000)
        self.assertGreaterEqual(int(call["endTimeUnixNano"]) - int(call["startTimeUnixNano"]), 50_000_000)
        self.assertLess(int(run["endTimeUnixNano"]) - int(run["startTimeUnixNano"]), 30_000_000_000)
        self.assertGreaterEqual(int(run["startTimeUnixNano"]) + 1000000, int(req["startTimeUnixNano"]))
        for s in spans:  # no bodies
            self.assertNotIn('"n"', json.dumps(s["_attrs"]))
        self.assertIsNone(by_id.get(caller), "the caller's span is not ours to export")

        after = metrics(admin)
        for name, labels in (("mspflow_engine_step_duration_seconds_count", {"type": "http"}),
                             ("mspflow_engine_step_duration_seconds_count", {"type": "transform"}),
                             ("mspflow_connector_requests_total", {"kind": "psa", "outcome": "ok"}),
                             ("mspflow_connector_request_duration_seconds_count", {"kind": "psa"}),
                             ("mspflow_engine_claim_latency_seconds_count", {}),
                             ("mspflow_engine_runs_started_total", {}),
                             ("mspflow_otlp_spans_total", {"result": "exported"})):
            self.assertGreater(value(after, name, **labels), value(before, name, **labels) or 0, (name, labels))
        self.assertIsNotNone(value(after, "mspflow_engine_lease_expiries_total"))
        self.assertTrue(wait_until(lambda: value(metrics(admin), "mspflow_engine_dead_letters", kind="run")
                                   is not None, 5, 0.1), "the dead-letter gauge is published")
        m = metrics(admin)
        self.assertIsNotNone(value(m, "mspflow_engine_queue_depth", state="ready"))
        self.assertIsNotNone(value(m, "mspflow_engine_dead_letters", kind="webhook_delivery"))
        self.assertEqual(value(m, "mspflow_otlp_spans_total", result="dropped_queue_full"), 0)

    def test_dead_letters_are_counted(self):
        admin = self.env.p.servers[0].admin_port
        self.env.call("PUT", "/workflows/doomed", {"trigger": {"event": "tele.doom"}, "steps": [
            {"id": "boom", "type": "transform", "output": {"x": "data.missing.deeper + 1"}}]})
        r = self.env.call("POST", "/events", {"type": "tele.doom", "data": {}},
                          headers={"Idempotency-Key": str(uuid.uuid4())})
        self.assertEqual(r.status, 202, r.body)
        self.wait_state(r.json()["run_ids"][0], "failed")
        failed = int(self.env.psql(f"SELECT count(*) FROM {self.env.schema}.runs WHERE state = 'failed'"))
        # engine_gauge_ms is 200 here: the count follows within a few periods
        self.assertTrue(wait_until(lambda: value(metrics(admin), "mspflow_engine_dead_letters", kind="run") == failed,
                                   5, 0.1), (failed, value(metrics(admin), "mspflow_engine_dead_letters", kind="run")))

    def test_off_by_default_and_a_dead_collector_costs_nothing(self):
        # gateways only (engine_enabled 0): were they to claim runs, another
        # test's run could be executed here and its spans sent elsewhere
        off = self.env.p.add_server({"otlp_endpoint": "", "engine_enabled": 0})
        # a port nothing listens on
        probe = MockServer({})
        dead_port = probe.port
        probe.close()
        dead = self.env.p.add_server({"otlp_endpoint": f"http://127.0.0.1:{dead_port}", "otlp_flush_ms": 50,
                                      "otlp_max_queue": 16, "engine_enabled": 0})
        try:
            for srv in (off, dead):
                t0 = time.monotonic()
                for _ in range(40):
                    r = api(srv.port, "GET", f"/v1/tenants/{self.env.tid}/runs?limit=1", self.env.msp_tok)
                    self.assertEqual(r.status, 200, r.body)
                self.assertLess(time.monotonic() - t0, 10)
            m = metrics(off.admin_port)
            self.assertEqual(value(m, "mspflow_otlp_exports_total"), 0, "no export without otlp_endpoint")
            self.assertEqual(value(m, "mspflow_otlp_spans_total", result="exported"), 0)
            ok = wait_until(lambda: (value(metrics(dead.admin_port), "mspflow_otlp_spans_total",
                                           result="dropped_export_failed") or 0) > 0, 15, 0.2)
            self.assertTrue(ok, metrics(dead.admin_port)[-1500:])
            self.assertEqual(api(dead.port, "GET", "/healthz").status, 200)
        finally:
            for srv in (off, dead):
                self.assertEqual(srv.stop(), 0, "a clean exit with a dead collector")
                self.env.p.servers.remove(srv)

    def test_dashboard_queries_only_exported_metrics(self):
        with open(os.path.join(ROOT, "infra", "grafana", "mspflow-dashboard.json")) as f:
            dash = json.load(f)
        exprs = []

        def walk(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    if k == "expr" and isinstance(v, str):
                        exprs.append(v)
                    walk(v)
            elif isinstance(o, list):
                for v in o:
                    walk(v)
        walk(dash)
        self.assertGreaterEqual(len(exprs), 15)
        self.assertTrue(any(v.get("type") == "datasource" and v.get("query") == "prometheus"
                            for v in dash["templating"]["list"]), "a Prometheus datasource variable")
        text = metrics(self.env.p.servers[0].admin_port)
        families = set(re.findall(r"^# TYPE (\w+) ", text, re.M))
        samples = set(re.findall(r"^(mspflow_\w+)", text, re.M))
        used = {n for e in exprs for n in re.findall(r"mspflow_\w+", e)}
        missing = sorted(n for n in used if n not in families and n not in samples)
        self.assertEqual(missing, [], "queried by the dashboard but not exported")
        # the panels cover what operations needs
        for want in ("mspflow_http_requests_total", "mspflow_engine_queue_depth",
                     "mspflow_engine_claim_latency_seconds_bucket", "mspflow_engine_step_duration_seconds_bucket",
                     "mspflow_engine_retries_total", "mspflow_engine_dead_letters",
                     "mspflow_engine_lease_expiries_total", "mspflow_connector_requests_total",
                     "mspflow_connector_request_duration_seconds_bucket", "mspflow_db_connections"):
            self.assertIn(want, used)


if __name__ == "__main__":
    unittest.main(verbosity=2)
