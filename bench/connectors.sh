#!/bin/sh
# Connector benchmark: outbound calls per second through the connector
# layer (connector and credential from the tenant's schema and vault, auth
# header, egress guard, outbound rate limiter, Idempotency-Key, traceparent,
# redacted summary: everything on) next to wrk driving the same target
# directly, in one invocation, reported as a ratio.
#
#   bench/connectors.sh [CALLS] [CONCURRENCY]      (default 200000 64)
#
# The target is nginx with one worker process answering GET /healthz; the
# connector layer runs on one worker loop (mspflow-cxbench) and wrk on one
# thread, each with CONCURRENCY connections: both ends share this machine's
# cores, so only the ratio means anything.  The set-up (tenant, policy,
# credential, connector) goes through the public API of `mspflow dev`.
# Two references run in the same invocation: the transport alone
# (cx_http, no connector layer; mspflow-cxbench URL mode) and libcurl's own
# fastest loop (mspflow-curlloop), which bound what any curl-based layer
# can reach here.  CXBENCH_WRAP="perf record -g" profiles the layer's runs.
set -eu
cd "$(dirname "$0")/.."
calls=${1:-200000}
conc=${2:-64}

. bench/lib.sh
bench_prepare
nport=$(free_port)
port=$(free_port)
start_nginx "$nport" 1
start_dev "$port" 1

tenant=$(python3 - "$work" "$port" "$nport" <<'PY'
import json, sys, urllib.request
work, port, nport = sys.argv[1], sys.argv[2], sys.argv[3]
cred = json.load(open(f"{work}/state/credentials.json"))
def call(method, path, body=None, token=None, form=None):
    data = json.dumps(body).encode() if body is not None else form
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    req.add_header("Content-Type", "application/json" if form is None else "application/x-www-form-urlencoded")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read() or b"null")
import urllib.parse
tok = call("POST", "/oauth/token", form=urllib.parse.urlencode({"grant_type": "client_credentials",
           "client_id": cred["client_id"], "client_secret": cred["client_secret"]}).encode())["access_token"]
import base64
pid = json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))["tenant_id"]  # the platform tenant
call("PUT", f"/v1/tenants/{pid}/policy", {"egress": {"allow_hosts": ["localhost"]}}, tok)
msp = call("POST", "/v1/tenants", {"kind": "msp", "name": "Bench MSP", "slug": "bench-msp"}, tok)
cl = call("POST", f"/v1/tenants/{msp['id']}/clients", {"name": "Bench Client", "slug": "bench-client"}, tok)
call("PUT", f"/v1/tenants/{cl['id']}/credentials/target", {"type": "bearer", "data": {"token": "bench-token-0123456789"}}, tok)
call("PUT", f"/v1/tenants/{cl['id']}/connectors/target", {"base_url": f"http://localhost:{nport}",
     "credential": "target", "rate_limit": {"requests": 1000000, "per": "PT1S"}}, tok)
print(cl["id"])
PY
)

sock=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    try: o = json.loads(l)
    except ValueError: continue
    if o.get("socket_dir"): print(o["socket_dir"]); break' "$work/dev.err")
cat > "$work/cx.conf" <<CONF
database_url = "host=$sock dbname=mspflow user=mspflow"
master_key_file = "$work/state/master.key"
egress_allow = "127.0.0.1/32, ::1/128"
connector_max_connections = $conc
connector_max_host_connections = $conc
CONF

wrk_rate() {
	wrk -t1 -c"$conc" -d"$1" "http://127.0.0.1:$nport/healthz" | awk '/Requests\/sec/ {print $2}'
}
cx_rate() {	# cx_rate 1: every call's summary built too
	CXBENCH_SUMMARY=${1:-0} ${CXBENCH_WRAP:-} build/mspflow-cxbench "$work/cx.conf" "$tenant" target "$calls" "$conc" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])'
}

raw_rate() {	# the transport alone (cx_http, no connector layer), same connections
	CXBENCH_CONNS=$conc build/mspflow-cxbench "http://127.0.0.1:$nport/healthz" "$calls" "$conc" - |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])'
}

curl_rate() {	# libcurl's own perform loop, nothing else: the transport's ceiling
	build/mspflow-curlloop "http://127.0.0.1:$nport/healthz" "$calls" "$conc" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["calls_per_s"])'
}

wrk_rate 3 >/dev/null	# warm-up
c1=$(cx_rate); s1=$(cx_rate 1); r1=$(raw_rate); l1=$(curl_rate); w1=$(wrk_rate 10)
c2=$(cx_rate); s2=$(cx_rate 1); r2=$(raw_rate); l2=$(curl_rate); w2=$(wrk_rate 10)
mkdir -p bench/results
out="bench/results/connectors-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$c1" "$c2" "$w1" "$w2" "$r1" "$r2" "$l1" "$l2" "$s1" "$s2" "$calls" "$conc" > "$out" <<'PY'
import json, sys
c1, c2, w1, w2, r1, r2, l1, l2, s1, s2 = map(float, sys.argv[1:11])
cx, wrk, raw, loop, summ = (c1 + c2) / 2, (w1 + w2) / 2, (r1 + r2) / 2, (l1 + l2) / 2, (s1 + s2) / 2
print(json.dumps({"connector_calls_per_s": round(cx), "wrk_req_per_s": round(wrk),
                  "ratio": round(cx / wrk, 3), "transport_only_calls_per_s": round(raw),
                  "transport_ratio": round(raw / wrk, 3), "layer_share_of_transport": round(cx / raw, 3),
                  "libcurl_loop_calls_per_s": round(loop), "libcurl_loop_ratio": round(loop / wrk, 3),
                  "connector_with_summary_calls_per_s": round(summ), "with_summary_ratio": round(summ / wrk, 3),
                  "runs": {"connector": [c1, c2], "with_summary": [s1, s2], "transport": [r1, r2],
                           "libcurl_loop": [l1, l2], "wrk": [w1, w2]},
                  "calls_per_run": int(sys.argv[11]), "concurrency": int(sys.argv[12]),
                  "target": "nginx 1 worker, GET /healthz", "cores": 2}, indent=2))
PY
cat "$out"
