#!/bin/sh
# Insights benchmark (docs/insights.md), in one invocation on one
# throwaway PostgreSQL (test settings: fsync off) and one `mspflow serve`
# (2 worker threads, access log off):
#
#   1. an msp with two clients made through the API; RUNS runs (default
#      1,000,000) over the last 365 days seeded by generate_series straight
#      into one client's schema (with their calls, dead letters, AI answers
#      and tasks: the triggers append their facts to insights_pending),
#      folded into the rollup (platform.insights_fold), then ANALYZE;
#   2. baselines: GET /v1/tenants/{t} and GET /insights on the empty client;
#   3. REQUESTS (default 200) GET /insights on the full client over one
#      keep-alive connection, windows of 1 h to 366 days at random offsets,
#      a third of them for one workflow; p50/p99 and the ratios; then the
#      msp's rollup (its two clients).
#
#   bench/insights.sh [RUNS] [REQUESTS]
#
# Results go to bench/results/insights-<time>.json.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_prepare
python3 bench/insights_driver.py "${1:-1000000}" "${2:-200}"
