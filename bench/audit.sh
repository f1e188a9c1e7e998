#!/bin/sh
# Audit chain benchmark (bench/audit_driver.py): committed audit writes/s
# into the chained table (platform/0010_audit_chain.sql) with the server's
# chainer running and without it, against the same inserts into the table
# as it was before the chain, interleaved in one invocation on one
# throwaway PostgreSQL 15 with its durable defaults (AUDIT_BENCH_FSYNC=off
# runs it like the test clusters); 16 pgbench clients into one tenant,
# then spread over 64 tenants; then the chainer's own rate, rows linked/s,
# working off a backlog (AUDIT_BENCH_BACKLOG rows, default 100000).
#
#   bench/audit.sh [SECONDS]   (default 8 per measurement, 12 measurements)
#
# Results go to bench/results/audit-<time>.json.
set -eu
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec python3 bench/audit_driver.py "${1:-8}"
