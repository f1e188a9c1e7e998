#!/bin/sh
# Engine benchmark, in one invocation on one PostgreSQL (a throwaway
# cluster with PostgreSQL's durable defaults: fsync and synchronous_commit
# on; ENGINE_BENCH_FSYNC=off runs it like the test clusters) and one
# `mspflow serve` (2 worker threads, access log off):
#
#   1. pgbench committing single-row inserts (16 clients): the ceiling of
#      an engine that commits once per step;
#   2. steps/s and runs/s of a five-step `transform` workflow and of a
#      five-step `http` workflow calling nginx on loopback through a
#      connector (runs started in bulk by platform.eng_start, as the
#      routes start them; the span is the first run's creation to the last
#      run's end, in the database's clock); the same for a five-step `ai`
#      workflow (classify, no review) against nginx's canned chat
#      completion: what building the request, checking the answer and
#      governing it cost over a plain http step;
#   3. event-to-first-step latency (events.received_at to the first step's
#      started_at) of events posted through POST /events at 50/s while the
#      engine carries half the transform run rate measured in 2.
#
#   bench/engine.sh [TRANSFORM_RUNS] [HTTP_RUNS] [SECONDS] [AI_RUNS]   (default 20000 5000 10 HTTP_RUNS)
#
# Results go to bench/results/engine-<time>.json; the goal ratios are in
# bench/README.md.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_prepare
nport=$(free_port)
start_nginx "$nport" 1
python3 bench/engine_driver.py "$nport" "${1:-20000}" "${2:-5000}" "${3:-10}" "${4:-${2:-5000}}"
