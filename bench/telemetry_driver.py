"""Driver of bench/telemetry.sh (see there).  Writes bench/results/telemetry-<time>.json.

The cost of span export on the engine: the five-step transform workload of
bench/engine.sh run by one `mspflow serve` with otlp_endpoint empty and by
one exporting every run's and step's span to a local collector that
answers 200 at once, alternately (off, on, off, on, ...) on one PostgreSQL,
so both see the same machine and database state; each server first runs
200 runs unmeasured (its LISTEN connection, caches and pools warm up); the
best of each side is compared."""
import http.server
import json
import os
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("MSPFLOW_BIN", os.path.join(ROOT, "build", "mspflow"))
from mfharness import PgCluster  # noqa: E402
from mfidentity import Platform, api  # noqa: E402

n_runs, rounds = int(sys.argv[1]), int(sys.argv[2])
durable = os.environ.get("ENGINE_BENCH_FSYNC", "on") != "off"
spans_seen = [0, 0]  # spans, POSTs


class Collector(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # counted, not parsed: the collector shares the CPUs with the server
        spans_seen[0] += body.count(b'"spanId"')
        spans_seen[1] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *a):
        pass


collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
threading.Thread(target=collector.serve_forever, daemon=True).start()

base = {"access_log": False, "workers": 2}
plat = Platform(pg=PgCluster(durable=durable), config=base)
big = {"rate_limit": {"window": "PT1M", "tenant_requests": 10000000, "client_requests": 10000000}}


def ok(r):
    if r.status >= 300:
        raise SystemExit(f"{r.status} {r.body[:300]!r}")
    return r.json() if r.body else None


admin = plat.admin_token
msp = ok(api(plat.port, "POST", "/v1/tenants", admin, {"kind": "msp", "name": "Bench MSP", "slug": "bench-msp"}))
ok(api(plat.port, "PUT", f"/v1/tenants/{msp['id']}/policy", admin, big))
cl = ok(api(plat.port, "POST", f"/v1/tenants/{msp['id']}/clients", admin, {"name": "Bench Client", "slug": "bench-c"}))
tid = cl["id"]
ok(api(plat.port, "PUT", f"/v1/tenants/{tid}/policy", admin,
       dict(big, engine={"max_concurrent_runs": 10000, "max_queued_runs": 1000000})))
ok(api(plat.port, "PUT", f"/v1/tenants/{tid}/workflows/five", admin, {
    "trigger": {"event": "bench.five"},
    "steps": [{"id": f"s{i}", "type": "transform", "output": {"v": "data.deal + 1"}} for i in range(1, 6)]}))
schema = plat.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{tid}'")


def measure(n_runs):
    plat.pg.psql(f"DELETE FROM {schema}.runs WHERE workflow = 'five'")
    plat.pg.psql("CHECKPOINT")
    left = n_runs
    while left > 0:
        k = min(2000, left)
        plat.pg.psql(f"""SELECT platform.eng_start('{tid}', '{schema}', 'bench', (
            SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'workflow', 'five',
                   'version', 1, 'step', 's1',
                   'ctx', '{{"input": {{}}, "data": {{"deal": 1}}, "steps": {{}}}}'::jsonb))
            FROM generate_series(1, {k})))""")
        left -= k
    deadline = time.time() + 600
    while time.time() < deadline:
        if int(plat.pg.psql(f"SELECT count(*) FROM {schema}.runs WHERE workflow = 'five' "
                            "AND state IN ('succeeded', 'failed')")) >= n_runs:
            break
        time.sleep(0.2)
    r = plat.pg.psql(f"""SELECT count(*) FILTER (WHERE state = 'succeeded'),
                         extract(epoch FROM max(finished_at) - min(created_at))
                         FROM {schema}.runs WHERE workflow = 'five'""").split("|")
    if int(r[0]) != n_runs:
        raise SystemExit(f"{r[0]} of {n_runs} runs succeeded")
    return 5 * n_runs / float(r[1])


def metric(srv, name, label):
    from mfharness import request
    for line in request(srv.admin_port, "GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + "{" + label):
            return int(float(line.split()[-1]))
    return None


otlp = {"otlp_endpoint": f"http://127.0.0.1:{collector.server_address[1]}", "otlp_flush_ms": 1000}
results = {"off": [], "on": []}
for i in range(rounds):
    for side in ("off", "on"):
        for s in list(plat.servers):
            if s.stop() != 0:
                raise SystemExit("server exit status")
            plat.servers.remove(s)
        srv = plat.add_server(otlp if side == "on" else {})
        measure(200)  # warm-up: the LISTEN connection, the tenant's caches, the pools
        sps = measure(n_runs)
        results[side].append(round(sps, 1))
        if side == "on":
            dropped = (metric(srv, "mspflow_otlp_spans_total", 'result="dropped_queue_full"') or 0) + \
                      (metric(srv, "mspflow_otlp_spans_total", 'result="dropped_export_failed"') or 0)
            results.setdefault("on_dropped", []).append(dropped)
        print(f"round {i + 1} otlp {side}: {sps:.0f} steps/s", file=sys.stderr)
time.sleep(1.5)  # the last flush
res = {"runs": n_runs, "steps": 5 * n_runs, "rounds": rounds,
       "postgresql": {"fsync": "on" if durable else "off"},
       "steps_per_s_otlp_off": results["off"], "steps_per_s_otlp_on": results["on"],
       "spans_dropped_with_otlp_on": results["on_dropped"],
       "spans_received_by_collector": spans_seen[0], "collector_posts": spans_seen[1],
       "otlp_on_vs_off": round(max(results["on"]) / max(results["off"]), 3)}
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
with open(os.path.join(ROOT, "bench", "results", f"telemetry-{stamp}.json"), "w") as f:
    json.dump(res, f, indent=2)
print(json.dumps(res, indent=2))
plat.close()
collector.shutdown()
