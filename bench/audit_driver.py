"""bench/audit.sh's driver: audited writes/s with the hash chain against the
same inserts without it, interleaved, on one durable PostgreSQL 15.

The baseline inserts the same rows with the linking trigger disabled and
seq / prev_hash / hash given by the writer (a sequence and constants), so
the table, its indexes and the commit are the same and the difference is
the chain: the head row's update (and its lock, held to commit), and the
SHA-256 of the encoding.  Two shapes: 16 clients writing into one tenant
(every append waits for the one before it to commit: the worst case) and
16 clients spread over 64 tenants."""
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("MSPFLOW_BIN", os.path.join(ROOT, "build", "mspflow"))
from mfharness import PgCluster, _tmpdir, run_migrate  # noqa: E402

secs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
durable = os.environ.get("AUDIT_BENCH_FSYNC", "on") != "off"
pg = PgCluster(durable=durable)
m = run_migrate(pg)
if m.returncode != 0:
    raise SystemExit("migrate: " + m.stderr)
pg.psql("CREATE SEQUENCE bench_seq")
d = _tmpdir("mspflow-bench-")
# the baseline's tenants are others than the chained ones: its seqs come
# from a sequence, not from a head
TENANT = "('00000000-0000-4000-8000-' || lpad(:t::text, 12, '0'))::uuid"
PLAIN_TENANT = "('00000000-0000-4000-9000-' || lpad(:t::text, 12, '0'))::uuid"
ROW = "'s:bench', 'ai.auto', 'run:0d9b7a52-4c1e-4f7a-9a64-2f1e5d6c7b8a', " \
      "'{\"step\": \"classify\", \"task\": \"classify\", \"confidence\": 0.95}'"
scripts = {
    "chained": f"INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) "
               f"VALUES ({TENANT}, {ROW});\n",
    "plain": f"INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail, seq, prev_hash, hash) "
             f"VALUES ({PLAIN_TENANT}, {ROW}, nextval('bench_seq'), '\\x00', '\\x00');\n",
}


def run(kind, tenants):
    path = os.path.join(d, kind + ".sql")
    with open(path, "w") as f:
        f.write(f"\\set t random(1, {tenants})\n" + scripts[kind])
    os.chmod(path, 0o644)
    pg.psql("ALTER TABLE platform.audit_events " + ("ENABLE" if kind == "chained" else "DISABLE") +
            " TRIGGER audit_events_link")
    r = subprocess.run([os.path.join(pg.bindir, "pgbench"), "-n", "-c", "16", "-j", "2", "-T", str(secs),
                        "-f", path, "-h", pg.sock, "-p", str(pg.port), "-U", "mspflow", "mspflow"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("pgbench: " + r.stderr)
    return float(next(line.split()[2] for line in r.stdout.splitlines() if line.startswith("tps = ")))


res = {"seconds": secs, "clients": 16, "postgresql": {"fsync": "on" if durable else "off"}}
for tenants in (1, 64):
    got = {"chained": [], "plain": []}
    for _ in range(2):   # interleaved: drift hits both alike
        for kind in ("plain", "chained"):
            got[kind].append(run(kind, tenants))
            print(f"{tenants} tenant(s), {kind}: {got[kind][-1]:.0f} writes/s", file=sys.stderr)
    c, p = sum(got["chained"]) / 2, sum(got["plain"]) / 2
    res[f"tenants_{tenants}"] = {"chained_writes_per_s": round(c), "plain_writes_per_s": round(p),
                                 "chained_vs_plain": round(c / p, 2), "runs": got}
pg.psql("ALTER TABLE platform.audit_events ENABLE TRIGGER audit_events_link")
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
with open(os.path.join(ROOT, "bench", "results", f"audit-{stamp}.json"), "w") as f:
    json.dump(res, f, indent=2)
print(json.dumps(res, indent=2))
pg.cleanup()
