#!/bin/sh
# Audit chain benchmark: committed audited writes/s through the linking
# trigger (platform/0010_audit_chain.sql) against the same inserts without
# it, interleaved in one invocation on one throwaway PostgreSQL 15 with its
# durable defaults (AUDIT_BENCH_FSYNC=off runs it like the test clusters);
# 16 pgbench clients into one tenant, then spread over 64 tenants.
#
#   bench/audit.sh [SECONDS]   (default 8 per measurement, 8 measurements)
#
# Results go to bench/results/audit-<time>.json.
set -eu
cd "$(dirname "$0")/.."
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec python3 bench/audit_driver.py "${1:-8}"
