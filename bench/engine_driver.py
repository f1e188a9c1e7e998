"""Driver of bench/engine.sh (see there).  Writes bench/results/engine-<time>.json."""
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("MSPFLOW_BIN", os.path.join(ROOT, "build", "mspflow"))
from mfharness import PgCluster  # noqa: E402
from mfidentity import Platform  # noqa: E402

nport, n_transform, n_http, secs = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n_ai = int(sys.argv[5]) if len(sys.argv) > 5 else n_http
durable = os.environ.get("ENGINE_BENCH_FSYNC", "on") != "off"
config = {"egress_allow": "127.0.0.1/32, ::1/128", "access_log": False, "workers": 2}
config.update(json.loads(os.environ.get("ENGINE_BENCH_CONFIG", "{}")))  # e.g. '{"engine_batch": 256}'
plat = Platform(pg=PgCluster(durable=durable), config=config)
port = plat.port
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def call(method, path, token=None, body=None, headers=None, c=None):
    h = dict(headers or {})
    data = None
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    (c or conn).request(method, path, body=data, headers=h)
    r = (c or conn).getresponse()
    b = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {b[:300]!r}")
    return json.loads(b) if b else None


def psql(sql):
    return plat.pg.psql(sql)


# ---- set-up through the public API ----
admin = plat.admin_token
me = {"tenant_id": plat.admin["tenant_id"]}
big = {"rate_limit": {"window": "PT1M", "tenant_requests": 10000000, "client_requests": 10000000},
       "ai": {"enabled": True, "require_human_approval": False, "min_confidence": 0.5}}
call("PUT", f"/v1/tenants/{me['tenant_id']}/policy", admin, dict(big, egress={"allow_hosts": ["localhost"]}))
msp = call("POST", "/v1/tenants", admin, {"kind": "msp", "name": "Bench MSP", "slug": f"bench-{int(time.time())}"})
call("PUT", f"/v1/tenants/{msp['id']}/policy", admin, big)
cl = call("POST", f"/v1/tenants/{msp['id']}/clients", admin, {"name": "Bench Client", "slug": "bench-client"})
tid = cl["id"]
call("PUT", f"/v1/tenants/{tid}/policy", admin,
     dict(big, engine={"max_concurrent_runs": 10000, "max_queued_runs": 1000000}))
call("PUT", f"/v1/tenants/{tid}/connectors/target", admin, {"base_url": f"http://localhost:{nport}"})
call("PUT", f"/v1/tenants/{tid}/connectors/llm", admin, {"base_url": f"http://localhost:{nport}/v1"})
schema = psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{tid}'")
tok = plat.token(tid)


def transform_steps(n):
    return [{"id": f"s{i}", "type": "transform", "output": {"x": f"{i} * 2", "deal": "data.deal"}}
            for i in range(1, n + 1)]


def http_steps(n):
    return [{"id": f"s{i}", "type": "http", "connector": "target", "method": "GET", "path": "/healthz",
             "output": {"status": "response.status"}, "timeout": "PT10S"} for i in range(1, n + 1)]


def post_steps(n):
    """http POSTs of a chat completion request of the ai steps' size to the
    same nginx location: the ai steps' wire work without the ai step."""
    body = {"messages": [{"role": "system", "content": "x" * 420}, {"role": "user", "content": "Classify request {{ data.deal }}"}],
            "response_format": {"type": "json_object"}, "temperature": 0, "max_tokens": 1024}
    return [{"id": f"s{i}", "type": "http", "connector": "target", "method": "POST", "path": "/v1/chat/completions",
             "body": body, "output": {"status": "response.status"}, "timeout": "PT10S"} for i in range(1, n + 1)]


def ai_steps(n):
    """classify steps against nginx's canned answer (bench/lib.sh): the
    request built, sent, the answer checked and governed, no review."""
    return [{"id": f"s{i}", "type": "ai", "connector": "llm", "task": "classify",
             "labels": ["standard", "normal", "emergency"], "prompt": "Classify request {{ data.deal }}",
             "timeout": "PT10S"} for i in range(1, n + 1)]


for name, ev, steps in (("five-transform", "bench.transform", transform_steps(5)),
                        ("five-http", "bench.http", http_steps(5)),
                        ("five-post", "bench.post", post_steps(5)),
                        ("five-ai", "bench.ai", ai_steps(5)),
                        ("probe", "bench.probe", transform_steps(5))):
    call("PUT", f"/v1/tenants/{tid}/workflows/{name}", admin, {"trigger": {"event": ev}, "steps": steps})
time.sleep(2.5)  # policies reach every worker; the engine's limits follow within its sweep


def start(workflow, n, chunk=2000):
    """n runs by platform.eng_start, as the routes start them, in
    transactions of `chunk` runs built by the server."""
    left = n
    while left > 0:
        k = min(chunk, left)
        psql(f"""SELECT platform.eng_start('{tid}', '{schema}', 'bench', (
            SELECT jsonb_agg(jsonb_build_object('id', gen_random_uuid(), 'workflow', '{workflow}',
                   'version', 1, 'step', 's1',
                   'ctx', '{{"input": {{}}, "data": {{"deal": 1}}, "steps": {{}}}}'::jsonb))
            FROM generate_series(1, {k})))""")
        left -= k


def wait_done(workflow, n, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        done = int(psql(f"SELECT count(*) FROM {schema}.runs WHERE workflow = '{workflow}' "
                        "AND state IN ('succeeded', 'failed')"))
        if done >= n:
            break
        time.sleep(0.2)
    r = psql(f"""SELECT count(*) FILTER (WHERE state = 'succeeded'),
                        extract(epoch FROM max(finished_at) - min(created_at))
                 FROM {schema}.runs WHERE workflow = '{workflow}'""").split("|")
    ok, span = int(r[0]), float(r[1])
    if ok != n:
        raise SystemExit(f"{workflow}: {ok} of {n} runs succeeded")
    return span


def throughput(workflow, n):
    start(workflow, n)
    span = wait_done(workflow, n)
    return {"runs": n, "steps": 5 * n, "seconds": round(span, 3), "runs_per_s": round(n / span, 1),
            "steps_per_s": round(5 * n / span, 1)}


# ---- 1. the ceiling of one-commit-per-step engines ----
psql("CREATE TABLE IF NOT EXISTS bench_insert (id bigserial PRIMARY KEY, v int NOT NULL)")
script = os.path.join(plat.pg.dir, "insert.sql")
with open(script, "w") as f:
    f.write("INSERT INTO bench_insert (v) VALUES (1);\n")
os.chmod(script, 0o644)
pg = subprocess.run([os.path.join(plat.pg.bindir, "pgbench"), "-n", "-c", "16", "-j", "2", "-T", str(secs),
                     "-f", script, "-h", plat.pg.sock, "-p", str(plat.pg.port), "-U", "mspflow", "mspflow"],
                    capture_output=True, text=True)
if pg.returncode != 0:
    raise SystemExit("pgbench: " + pg.stderr)
tps = next(float(l.split()[2]) for l in pg.stdout.splitlines() if l.startswith("tps = "))
print(f"pgbench single-row insert: {tps:.0f} tx/s", file=sys.stderr)
# what pgbench leaves behind (dirty buffers, a table for autovacuum) must
# not bill the engine's runs that follow: drop it and checkpoint
psql("DROP TABLE bench_insert")
psql("CHECKPOINT")

# ---- 2. steps/s and runs/s ----
tr = throughput("five-transform", n_transform)
print(f"five-transform: {tr}", file=sys.stderr)
ht = throughput("five-http", n_http)
print(f"five-http: {ht}", file=sys.stderr)
pt = throughput("five-post", n_ai)
print(f"five-post: {pt}", file=sys.stderr)
at = throughput("five-ai", n_ai)
print(f"five-ai: {at}", file=sys.stderr)

# ---- 3. event-to-first-step latency at half the transform run rate ----
half = tr["runs_per_s"] / 2
stop = threading.Event()
probe_rate = 50.0  # events/s posted through the API, part of the load
bg_rate = max(half - probe_rate, 0)


def background():
    tick = 0.1
    while not stop.is_set():
        t0 = time.time()
        k = int(round(bg_rate * tick))
        if k:
            start("five-transform", k, chunk=k)
        d = tick - (time.time() - t0)
        if d > 0:
            time.sleep(d)


bg = threading.Thread(target=background, daemon=True)
bg.start()
time.sleep(1)
pconn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
probe_runs = []
t_end = time.time() + secs
nxt = time.time()
while time.time() < t_end:
    a = call("POST", f"/v1/tenants/{tid}/events", tok, {"type": "bench.probe", "data": {"deal": 1}},
             headers={"Idempotency-Key": str(uuid.uuid4())}, c=pconn)
    probe_runs += a["run_ids"]
    nxt += 1 / probe_rate
    d = nxt - time.time()
    if d > 0:
        time.sleep(d)
stop.set()
bg.join()
wait_done("probe", len(probe_runs))
lat = [float(x) * 1000 for x in psql(f"""
    SELECT extract(epoch FROM s.started_at - e.received_at)
    FROM {schema}.runs r JOIN {schema}.events e ON e.id = r.event_id
    JOIN {schema}.run_steps s ON s.run_id = r.id AND s.seq = 1
    WHERE r.workflow = 'probe'""").split()]
lat.sort()
q = statistics.quantiles(lat, n=100)
offered = bg_rate + probe_rate
latency = {"offered_runs_per_s": round(offered, 1), "probes": len(lat), "p50_ms": round(q[49], 2),
           "p99_ms": round(q[98], 2), "max_ms": round(lat[-1], 2)}
print(f"latency at half load: {latency}", file=sys.stderr)

res = {"config": config, "postgresql": {"fsync": "on" if durable else "off", "synchronous_commit": "on"},
       "pgbench_insert_tps": round(tps, 1), "five_transform": tr, "five_http": ht, "five_ai": at, "latency": latency,
       "five_post": pt, "ai_steps_vs_http_steps": round(at["steps_per_s"] / ht["steps_per_s"], 2),
       "ai_steps_vs_http_post_steps": round(at["steps_per_s"] / pt["steps_per_s"], 2),
       "transform_steps_vs_insert_commits": round(tr["steps_per_s"] / tps, 2),
       "http_steps_vs_insert_commits": round(ht["steps_per_s"] / tps, 2)}
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
with open(os.path.join(ROOT, "bench", "results", f"engine-{stamp}.json"), "w") as f:
    json.dump(res, f, indent=2)
print(json.dumps(res, indent=2))
plat.close()
