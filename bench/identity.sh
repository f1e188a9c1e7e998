#!/bin/sh
# Identity benchmarks, in one invocation against `mspflow dev` (embedded
# PostgreSQL, 2 worker threads, access log off):
#
#   1. authenticated GET /v1/tenants/{id}/access (JWT from the token cache,
#      subject and tenant checks, reach, both rate limiters; no database)
#      next to GET /healthz, wrk -t2 -c64, two interleaved rounds each;
#   2. tenant provisioning: N clients created one after another over one
#      keep-alive connection, milliseconds per tenant (median, p90);
#   3. `mspflow migrate` over M tenant schemas for one new migration (the
#      latest tenant migration is rolled back in every schema first).
#
#   bench/identity.sh [SECONDS_PER_RUN] [N_PROVISION] [M_SCHEMAS]   (10 200 10000)
set -eu
cd "$(dirname "$0")/.."
secs=${1:-10}
nprov=${2:-200}
nschemas=${3:-10000}

infra/deps --bench
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null

work=$(mktemp -d)
chmod 755 "$work"
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MSPFLOW_WORKERS=2 MSPFLOW_ACCESS_LOG=false MSPFLOW_LOG_LEVEL=info \
	build/mspflow dev --state "$work/state" --listen "127.0.0.1:$port" --admin-listen= \
	> "$work/dev.out" 2> "$work/dev.err" &
pid=$!
for i in $(seq 1 600); do
	[ -s "$work/state/credentials.json" ] && curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
done

python3 bench/identity_driver.py "$work" "$port" "$secs" "$nprov" "$nschemas"
