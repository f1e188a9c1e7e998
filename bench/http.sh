#!/bin/sh
# HTTP core benchmark: GET /healthz on mspflow next to nginx serving the
# same JSON body on this machine, in one invocation, reported as a ratio.
#
#   bench/http.sh [SECONDS_PER_RUN]      (default 10)
#
# Both servers get 2 worker threads/processes, access logs off (mspflow is
# also measured with its access log on), and wrk (2 threads, 64
# connections) runs on the same machine: all three share its cores, so the
# absolute numbers are low and only the ratio means anything.  Each server
# is measured twice, interleaved, after a warm-up; the report takes the
# mean.  Loopback only; everything started is stopped at exit.
set -eu
cd "$(dirname "$0")/.."
secs=${1:-10}

. bench/lib.sh
bench_prepare
nport=$(free_port)
mport=$(free_port)
lport=$(free_port)
start_nginx "$nport" 2

for variant in plain logged; do
	port=$mport; log=false
	[ $variant = logged ] && { port=$lport; log=true; }
	printf 'listen = 127.0.0.1:%s\nadmin_listen = ""\nworkers = 2\naccess_log = %s\n' "$port" "$log" \
		> "$work/mspflow-$variant.conf"
	build/mspflow serve --config "$work/mspflow-$variant.conf" 2>/dev/null &
	pids="$pids $!"
done

for p in $nport $mport $lport; do
	for i in $(seq 1 100); do
		curl -fs "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break
		sleep 0.1
	done
done
[ "$(curl -s http://127.0.0.1:$nport/healthz)" = "$(curl -s http://127.0.0.1:$mport/healthz)" ] || {
	echo "bench: the two bodies differ" >&2; exit 1; }

run() {	# run PORT SECONDS -> "rps p50_ms p99_ms"
	wrk -t2 -c64 -d"$2"s --latency "http://127.0.0.1:$1/healthz" | awk '
		function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
		/Requests\/sec/ { rps = $2 }
		$1 == "50%" { p50 = ms($2) }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx/ { bad = $NF }
		END { if (bad > 0) { print "non-2xx responses" > "/dev/stderr"; exit 1 } printf "%s %s %s\n", rps, p50, p99 }'
}

echo "warming up..." >&2
run $nport 2 >/dev/null
run $mport 2 >/dev/null
run $lport 2 >/dev/null
: > "$work/results"
for round in 1 2; do
	for target in nginx:$nport mspflow:$mport mspflow_access_log:$lport; do
		name=${target%%:*}; port=${target##*:}
		echo "round $round: $name (${secs}s)" >&2
		echo "$name $(run "$port" "$secs")" >> "$work/results"
	done
done

out="bench/results/http-$(date -u +%Y%m%dT%H%M%SZ).json"
python3 - "$work/results" "$out" "$secs" <<'PY'
import json, os, sys, platform
rows = {}
for line in open(sys.argv[1]):
    name, rps, p50, p99 = line.split()
    rows.setdefault(name, []).append((float(rps), float(p50), float(p99)))
mean = {k: [sum(x[i] for x in v) / len(v) for i in range(3)] for k, v in rows.items()}
n = mean["nginx"]
print(f"{'server':<22}{'req/s':>12}{'p50 ms':>10}{'p99 ms':>10}{'vs nginx':>10}")
for k in ("nginx", "mspflow", "mspflow_access_log"):
    r, p50, p99 = mean[k]
    print(f"{k:<22}{r:>12.0f}{p50:>10.3f}{p99:>10.3f}{r / n[0]:>10.2f}")
print(f"(wrk -t2 -c64 -d{sys.argv[3]}s --latency, mean of 2 interleaved runs; nginx, mspflow and wrk "
      f"share this machine's {os.cpu_count()} cores)")
result = {"benchmark": "GET /healthz", "tool": f"wrk -t2 -c64 -d{sys.argv[3]}s", "cores": os.cpu_count(),
          "runs": rows, "mean": {k: {"rps": v[0], "p50_ms": v[1], "p99_ms": v[2]} for k, v in mean.items()},
          "ratio_rps_mspflow_over_nginx": mean["mspflow"][0] / n[0],
          "ratio_p99_mspflow_over_nginx": mean["mspflow"][2] / n[2]}
with open(sys.argv[2], "w") as f:
    json.dump(result, f, indent=2)
print(f"written to {sys.argv[2]}")
PY
