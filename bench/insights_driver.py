"""Driver of bench/insights.sh (see there).  Writes bench/results/insights-<time>.json."""
import http.client
import json
import os
import random
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("MSPFLOW_BIN", os.path.join(ROOT, "build", "mspflow"))
from mfharness import PgCluster  # noqa: E402
from mfidentity import Platform  # noqa: E402

n_runs, n_req = int(sys.argv[1]), int(sys.argv[2])
plat = Platform(pg=PgCluster(durable=False), config={"access_log": False, "workers": 2})
conn = http.client.HTTPConnection("127.0.0.1", plat.port, timeout=120)


def call(method, path, token, body=None):
    h = {"Authorization": "Bearer " + token}
    data = None
    if body is not None:
        data, h["Content-Type"] = json.dumps(body).encode(), "application/json"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    b = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {b[:300]!r}")
    return json.loads(b) if b else None


admin = plat.admin_token
big = {"rate_limit": {"window": "PT1M", "tenant_requests": 10000000, "client_requests": 10000000}}
call("PUT", f"/v1/tenants/{plat.admin['tenant_id']}/policy", admin, big)
msp = call("POST", "/v1/tenants", admin, {"kind": "msp", "name": "Bench MSP", "slug": f"bench-{int(time.time())}"})
call("PUT", f"/v1/tenants/{msp['id']}/policy", admin, big)
full = call("POST", f"/v1/tenants/{msp['id']}/clients", admin, {"name": "Full", "slug": "bench-full"})
empty = call("POST", f"/v1/tenants/{msp['id']}/clients", admin, {"name": "Empty", "slug": "bench-empty"})
schema = plat.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{full['id']}'")
tok = plat.token(msp["id"])

# ---- seed: n_runs runs over the last 365 days in 4 workflows, with
# their calls, dead letters, AI answers and tasks, by generate_series in
# chunks of 100,000 runs (the insights triggers append each chunk's facts
# to insights_pending), then folded into the rollup before any read: an
# unfolded backlog of millions of facts would be read at every request ----
wf_def = json.dumps({"trigger": {"event": "b"}, "steps": [
    {"id": "call", "type": "http", "connector": "crm", "method": "GET", "path": "/x"},
    {"id": "triage", "type": "ai", "connector": "llm", "task": "classify", "labels": ["a"], "prompt": "p"},
    {"id": "ask", "type": "approval", "assignee_role": "finance", "sla": "PT4H", "on_timeout": "reject",
     "title": "t"}]})
plat.pg.psql(f"""SET search_path = {schema};
INSERT INTO workflows (name, latest_version, trigger_event, created_by)
SELECT 'wf' || i, 1, 'b', 'bench' FROM generate_series(1, 4) i;
INSERT INTO workflow_versions (workflow, version, definition, created_by)
SELECT 'wf' || i, 1, '{wf_def}', 'bench' FROM generate_series(1, 4) i;""")
t0 = time.time()
span = 365 * 86400.0
chunk = 100000
for lo in range(0, n_runs, chunk):
    hi = min(n_runs, lo + chunk)
    plat.pg.psql(f"""SET search_path = {schema};
CREATE TEMP TABLE g AS
SELECT i, ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid AS id,
       now() - make_interval(secs => {span} * (1 - i::float8 / {n_runs})) AS created,
       random() AS u, random() AS v
FROM generate_series({lo + 1}, {hi}) i;
INSERT INTO runs (id, workflow, version, state, ctx, created_by, created_at, finished_at, error)
SELECT id, 'wf' || (1 + i % 4), 1,
       CASE WHEN u < 0.85 THEN 'succeeded' WHEN u < 0.93 THEN 'failed' WHEN u < 0.97 THEN 'cancelled' ELSE 'running' END,
       '{{}}', 'bench', created,
       CASE WHEN u < 0.97 THEN created + make_interval(secs => 1 + 7200 * v * v * v) END,
       CASE WHEN u >= 0.85 AND u < 0.93 THEN jsonb_build_object('code', (ARRAY['http_status', 'timeout', 'invalid_output'])[1 + i % 3]) END
FROM g;
INSERT INTO run_steps (run_id, seq, step, type, attempt, state, started_at, finished_at, output, error, summary)
SELECT id, 1, 'call', 'http', 1, CASE WHEN v < 0.05 THEN 'retrying' ELSE 'succeeded' END, created, created,
       NULL, CASE WHEN v < 0.05 THEN '{{"code": "http_status"}}'::jsonb END,
       jsonb_build_object('duration_ms', 20 + (800 * v * v)::int)
FROM g
UNION ALL
SELECT id, 2, 'triage', 'ai', 1, 'succeeded', created, created,
       jsonb_build_object('outcome', (ARRAY['auto', 'auto', 'auto', 'accepted', 'edited', 'rejected'])[1 + i % 6]),
       NULL, jsonb_build_object('duration_ms', 300 + (2000 * v)::int)
FROM g WHERE i % 3 = 0
UNION ALL
SELECT id, 3, 'call', 'http', 1, 'failed', created, created, NULL, jsonb_build_object('code', (ARRAY['http_status', 'timeout', 'invalid_output'])[1 + i % 3]), NULL
FROM g WHERE u >= 0.85 AND u < 0.93;
INSERT INTO tasks (id, run_id, step, title, assignee_role, state, due_at, escalated, decided_at, created_at)
SELECT gen_random_uuid(), id, 'ask', 't', (ARRAY['finance', 'it', 'legal'])[1 + i % 3],
       CASE WHEN v < 0.9 THEN 'approved' WHEN v < 0.95 THEN 'rejected' ELSE 'expired' END,
       created + interval '4 hours', v > 0.98,
       CASE WHEN v < 0.95 THEN created + make_interval(secs => 60 + 20000 * u * u) END, created
FROM g WHERE i % 4 = 0;
DROP TABLE g;""")
    print(f"seeded {hi} runs ({time.time() - t0:.0f} s)", flush=True)
seed_s = time.time() - t0
t0 = time.time()
folded = int(plat.pg.psql("SELECT platform.insights_fold()"))
fold_s = time.time() - t0
print(f"folded {folded} pending facts in {fold_s:.0f} s", flush=True)
plat.pg.psql(f"ANALYZE {schema}.runs; ANALYZE {schema}.run_steps; ANALYZE {schema}.tasks; "
             f"ANALYZE {schema}.insights_rollup; ANALYZE {schema}.insights_pending")
counts = plat.pg.psql(f"SELECT (SELECT count(*) FROM {schema}.runs), (SELECT count(*) FROM {schema}.run_steps), "
                      f"(SELECT count(*) FROM {schema}.tasks), (SELECT count(*) FROM {schema}.insights_rollup)")

if os.environ.get("INSIGHTS_BENCH_HOLD"):
    # keep the seeded server for a look at plans: remove the file to go on
    hold = os.environ["INSIGHTS_BENCH_HOLD"]
    with open(hold, "w") as f:
        f.write(f"{plat.pg.sock} {plat.pg.port} {schema} {full['id']} {plat.port} {tok}\n")
    while os.path.exists(hold):
        time.sleep(1)

# the raw read of one partial hour at either end of a window (index range
# scans expected), planned as insights_partial plans it: inlined
edge = time.time() - 100 * 86400
explain = plat.pg.psql(f"SET search_path = {schema}; EXPLAIN (ANALYZE, COSTS OFF) SELECT * FROM insights_raw("
                       f"to_timestamp({edge}), to_timestamp({edge + 2400}), NULL, 'all')").splitlines()
print("\n".join(explain), flush=True)

# ---- requests (a fresh connection: the server closed the idle one) ----
conn.close()
conn = http.client.HTTPConnection("127.0.0.1", plat.port, timeout=120)
rnd = random.Random(8)
lengths = [3600, 86400, 7 * 86400, 30 * 86400, 366 * 86400]


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def window():
    ln = rnd.choice(lengths)
    now = time.time()
    start = now - 366 * 86400 + rnd.random() * max(1, 366 * 86400 - ln)
    q = f"from={iso(start)}&to={iso(start + ln)}"
    wf = rnd.random() < 1 / 3
    if wf:
        q += f"&workflow=wf{rnd.randint(1, 4)}"
    return (ln, wf), q


def timed(path, n):
    lat = []
    for _ in range(n):
        p = path() if callable(path) else path
        t = time.perf_counter()
        call("GET", p, tok)
        lat.append((time.perf_counter() - t) * 1000)
    return lat


def stats(lat):
    s = sorted(lat)
    return {"n": len(s), "p50_ms": round(s[len(s) // 2], 2), "p90_ms": round(s[int(len(s) * .9)], 2),
            "p99_ms": round(s[min(len(s) - 1, int(len(s) * .99))], 2), "max_ms": round(s[-1], 2)}


timed(f"/v1/tenants/{full['id']}", 20)  # warm-up
base_get = stats(timed(f"/v1/tenants/{full['id']}", n_req))
base_empty = stats(timed(lambda: f"/v1/tenants/{empty['id']}/insights?" + window()[1], n_req))
def one():
    ln, q = window()
    t = time.perf_counter()
    call("GET", f"/v1/tenants/{full['id']}/insights?" + q, tok)
    by_len[ln].append((time.perf_counter() - t) * 1000)


by_len = {(ln, wf): [] for ln in lengths for wf in (False, True)}
for _ in range(5):
    one()
by_len = {(ln, wf): [] for ln in lengths for wf in (False, True)}
for _ in range(n_req):
    one()
allv = [x for v in by_len.values() for x in v]
ins = stats(allv)
msp_roll = stats(timed(lambda: f"/v1/tenants/{msp['id']}/insights?" + window()[1], max(20, n_req // 4)))
year = call("GET", f"/v1/tenants/{full['id']}/insights?from={iso(time.time() - 366 * 86400 + 60)}&to={iso(time.time())}",
            tok)
out = {"runs": n_runs, "rows": dict(zip(["runs", "run_steps", "tasks", "insights_rollup"], counts.split("|"))),
       "seed_seconds": round(seed_s, 1), "fold_seconds": round(fold_s, 1), "folded_facts": folded, "requests": n_req,
       "baseline_get_tenant": base_get, "baseline_insights_empty_tenant": base_empty,
       "insights_1m": ins, "insights_by_window_s": {f"{k[0]}{'+workflow' if k[1] else ''}": stats(v) for k, v in by_len.items() if v},
       "insights_by_window_s_any_workflow": {str(ln): stats(by_len[(ln, False)] + by_len[(ln, True)])
                                             for ln in lengths if by_len[(ln, False)] + by_len[(ln, True)]},
       "explain_raw_edge_hour": explain,
       "msp_rollup": msp_roll,
       "ratio_p99_vs_get_tenant": round(ins["p99_ms"] / base_get["p99_ms"], 2),
       "ratio_p99_vs_empty_insights": round(ins["p99_ms"] / base_empty["p99_ms"], 2),
       "year_window_sample": {"runs": year["runs"], "cycle_time_ms": year["cycle_time_ms"]}}
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
path = os.path.join(ROOT, "bench", "results", f"insights-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json")
with open(path, "w") as f:
    json.dump(out, f, indent=2)
print(json.dumps(out, indent=2))
print("results:", path)
plat.close()
