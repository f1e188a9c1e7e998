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

. bench/lib.sh
bench_prepare
port=$(free_port)
start_dev "$port" 2

python3 bench/identity_driver.py "$work" "$port" "$secs" "$nprov" "$nschemas"
