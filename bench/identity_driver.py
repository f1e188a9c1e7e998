"""Driver of bench/identity.sh (see there).  Writes bench/results/identity-<time>.json."""
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse

work, port, secs, nprov, nschemas = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
creds = json.load(open(os.path.join(work, "state", "credentials.json")))
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)


def call(method, path, token=None, body=None, form=None):
    h = {}
    data = None
    if token:
        h["Authorization"] = "Bearer " + token
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        h["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=data, headers=h)
    r = conn.getresponse()
    b = r.read()
    if r.status >= 300:
        raise SystemExit(f"{method} {path}: {r.status} {b[:300]!r}")
    return json.loads(b) if b else None


def token(cid, secret):
    return call("POST", "/oauth/token", form={"grant_type": "client_credentials", "client_id": cid,
                                              "client_secret": secret})["access_token"]


admin = token(creds["client_id"], creds["client_secret"])
me = json.loads(__import__("base64").urlsafe_b64decode(admin.split(".")[1] + "=="))
big = {"rate_limit": {"window": "PT1M", "tenant_requests": 10000000, "client_requests": 10000000}}
call("PUT", f"/v1/tenants/{me['tenant_id']}/policy", admin, big)
msp = call("POST", "/v1/tenants", admin, {"kind": "msp", "name": "Bench MSP", "slug": f"bench-{int(time.time())}"})
call("PUT", f"/v1/tenants/{msp['id']}/policy", admin, big)
ac = call("POST", f"/v1/tenants/{msp['id']}/api-clients", admin, {"name": "bench"})
tok = token(ac["client_id"], ac["client_secret"])
time.sleep(2.5)   # every worker's cached plan has expired


def wrk(path, seconds, with_token=True):
    args = ["wrk", "-t2", "-c64", f"-d{seconds}s", "--latency"]
    if with_token:
        args += ["-H", "Authorization: Bearer " + tok]
    out = subprocess.run(args + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True).stdout
    rps = p50 = p99 = None
    bad = 0

    def ms(v):
        return float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-2]) if v.endswith("ms") else float(v[:-1]) * 1000
    for line in out.splitlines():
        f = line.split()
        if line.startswith("Requests/sec"):
            rps = float(f[1])
        elif f[:1] == ["50%"]:
            p50 = ms(f[1])
        elif f[:1] == ["99%"]:
            p99 = ms(f[1])
        elif "Non-2xx" in line:
            bad = int(f[-1])
    if bad:
        raise SystemExit(f"{path}: {bad} non-2xx responses")
    return rps, p50, p99


check_path = f"/v1/tenants/{msp['id']}/access/read"   # 204, no body
doc_path = f"/v1/tenants/{msp['id']}/access"           # 200, the ~330-byte permissions document
print("warming up...", file=sys.stderr)
wrk("/healthz", 2, False)
wrk(check_path, 2)
# healthz_token: /healthz carrying the same Authorization header (ignored):
# what moving the token costs, apart from checking it
runs = {"healthz": [], "healthz_token": [], "authenticated": [], "authenticated_doc": []}
for rnd in (1, 2):
    for name, path, with_token in (("healthz", "/healthz", False), ("healthz_token", "/healthz", True),
                                   ("authenticated", check_path, True), ("authenticated_doc", doc_path, True)):
        print(f"round {rnd}: {name} ({secs}s)", file=sys.stderr)
        runs[name].append(wrk(path, secs, with_token))
mean = {k: [statistics.mean(x[i] for x in v) for i in range(3)] for k, v in runs.items()}
ratio = mean["authenticated"][0] / mean["healthz"][0]
labels = {"healthz": "GET /healthz", "healthz_token": "GET /healthz + token header",
          "authenticated": "GET .../access/read (204)", "authenticated_doc": "GET .../access (JSON)"}
print(f"{'route':<30}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs healthz':>12}")
for k, (r, p50, p99) in mean.items():
    print(f"{labels[k]:<30}{r:>10.0f}{p50:>10.3f}{p99:>10.3f}{r / mean['healthz'][0]:>12.2f}")

# provisioning (a fresh connection: the first one idled past idle_timeout_ms during wrk)
conn.close()
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
times = []
for i in range(nprov):
    t0 = time.perf_counter()
    call("POST", f"/v1/tenants/{msp['id']}/clients", tok, {"name": f"P{i}", "slug": f"bp-{i}"})
    times.append((time.perf_counter() - t0) * 1000)
times.sort()
prov = {"n": nprov, "median_ms": statistics.median(times), "p90_ms": times[int(nprov * 0.9) - 1],
        "max_ms": times[-1]}
print(f"provisioning: {nprov} clients, median {prov['median_ms']:.1f} ms, p90 {prov['p90_ms']:.1f} ms")

# migrate over many schemas
mig = None
if nschemas > 0:
    have = nprov
    t0 = time.time()
    import threading
    lock = threading.Lock()
    nxt = [have]

    def fill():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= nschemas:
                return
            c.request("POST", f"/v1/tenants/{msp['id']}/clients", body=json.dumps({"name": f"M{i}", "slug": f"bm-{i}"}),
                      headers={"Authorization": "Bearer " + tok, "Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            if r.status != 201:
                raise SystemExit(f"fill: {r.status}")
    ts = [threading.Thread(target=fill) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    fill_s = time.time() - t0
    print(f"created {nschemas - have} more tenants in {fill_s:.0f} s", file=sys.stderr)
    cfg = os.path.join(work, "migrate.conf")
    # the dev cluster's socket folder: the dev log names it
    info = None
    for line in open(os.path.join(work, "dev.err")):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("msg") == "embedded PostgreSQL ready":
            info = f"host={o['socket_dir']} dbname=mspflow user=mspflow"
    if info is None:
        raise SystemExit("cannot find the dev cluster's socket in its log")
    # "one new migration": take the newest tenant migration (0001_settings,
    # which creates one table) back out of every schema, then migrate
    # (committing every 500 schemas: one transaction would need a lock per table)
    roll = ("DO $$ DECLARE s text; n int := 0; BEGIN FOR s IN SELECT schema_name FROM platform.tenants "
            "WHERE schema_name IS NOT NULL LOOP EXECUTE format('DROP TABLE %I.settings', s); "
            "EXECUTE format('DELETE FROM %I.schema_migrations WHERE version = 1', s); n := n + 1; "
            "IF n % 500 = 0 THEN COMMIT; END IF; END LOOP; END $$")
    r = subprocess.run(["psql", info, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", roll], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("rollback failed: " + r.stderr)
    with open(cfg, "w") as f:
        f.write(f'database_url = "{info}"\nlog_level = "warn"\n')
    t0 = time.time()
    r = subprocess.run(["build/mspflow", "migrate", "--config", cfg], capture_output=True, text=True)
    mig_s = time.time() - t0
    if r.returncode != 0:
        raise SystemExit("migrate failed: " + r.stderr)
    summary = json.loads(r.stdout)
    mig = {"schemas": summary["schemas"], "changed": summary["changed"], "seconds": mig_s}
    print(f"migrate: {summary['changed']} of {summary['schemas']} schemas upgraded in {mig_s:.1f} s")

out = f"bench/results/identity-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
with open(out, "w") as f:
    json.dump({"benchmark": "identity", "tool": f"wrk -t2 -c64 -d{secs}s", "cores": os.cpu_count(),
               "runs": runs, "mean": {k: {"rps": v[0], "p50_ms": v[1], "p99_ms": v[2]} for k, v in mean.items()},
               "ratio_rps_authenticated_over_healthz": ratio,
               "ratio_rps_authenticated_doc_over_healthz": mean["authenticated_doc"][0] / mean["healthz"][0], "provisioning": prov, "migrate": mig}, f, indent=2)
print(f"written to {out}")
