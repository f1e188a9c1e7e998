#!/bin/sh
# Span export's cost on the engine, in one invocation on one PostgreSQL:
# the five-step transform workload of bench/engine.sh (RUNS runs started in
# bulk by platform.eng_start) by one `mspflow serve` (2 worker threads,
# access log off) with otlp_endpoint empty and by one exporting every run's
# and step's span to a local collector answering 200 at once, alternately
# for ROUNDS rounds; reports steps/s of each and the ratio of the best of
# each side (otlp_on_vs_off; goal in bench/README.md).
#
#   bench/telemetry.sh [RUNS] [ROUNDS]   (default 5000 2)
#
# ENGINE_BENCH_FSYNC=off runs PostgreSQL like the test clusters.  Results
# go to bench/results/telemetry-<time>.json.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
bench_prepare
python3 bench/telemetry_driver.py "${1:-5000}" "${2:-2}"
