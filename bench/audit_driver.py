"""bench/audit.sh's driver: what the audit chain costs its writers, and how
fast the chainer links, on one durable PostgreSQL 15.

Writers: pgbench commits one audit row per transaction into
platform.audit_events as migration 0010 leaves it (the insert guard, the
partial indexes): "chained" while a chainer like the server's links the
committed rows every 500 ms (at once while its batch comes back full),
"unlinked" with no chainer running (what the writers' own statements cost);
interleaved with the same inserts into a table shaped like the audit table
before the chain existed ("plain": same columns, primary key and
(tenant_id, id) index, no trigger).  On a machine whose CPUs are busy, the
chainer's own work (a hash and an update per row) competes with the
writers: "chained" shows that, "unlinked" the writers' path alone.  Two shapes: 16 clients writing into one tenant and 16 clients
spread over 64 tenants.

Chainer: a backlog of unchained rows (one tenant, then 64) linked by
platform.audit_chain_due(2000) calls one after another, as the server does
when it falls behind: rows chained per second."""
import json
import os
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
os.environ.setdefault("MSPFLOW_BIN", os.path.join(ROOT, "build", "mspflow"))
from mfharness import PgCluster, _tmpdir, run_migrate  # noqa: E402

secs = int(sys.argv[1]) if len(sys.argv) > 1 else 8
backlog = int(os.environ.get("AUDIT_BENCH_BACKLOG", "100000"))
durable = os.environ.get("AUDIT_BENCH_FSYNC", "on") != "off"
BATCH = 2000
pg = PgCluster(durable=durable)
m = run_migrate(pg)
if m.returncode != 0:
    raise SystemExit("migrate: " + m.stderr)
# the audit table as it was before migration 0010: no chain columns, no trigger
pg.psql("CREATE TABLE bench_plain (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), "
        "tenant_id uuid NOT NULL, actor text NOT NULL, action text NOT NULL, target text NOT NULL DEFAULT '', "
        "detail jsonb NOT NULL DEFAULT '{}'); CREATE INDEX ON bench_plain (tenant_id, id)")
d = _tmpdir("mspflow-bench-")
TENANT = "('00000000-0000-4000-8000-' || lpad(:t::text, 12, '0'))::uuid"
COLS = "(tenant_id, actor, action, target, detail)"
ROW = "'s:bench', 'ai.auto', 'run:0d9b7a52-4c1e-4f7a-9a64-2f1e5d6c7b8a', " \
      "'{\"step\": \"classify\", \"task\": \"classify\", \"confidence\": 0.95}'"
TABLE = {"chained": "platform.audit_events", "unlinked": "platform.audit_events", "plain": "bench_plain"}


def psql_cmd():
    return [os.path.join(pg.bindir, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", pg.sock,
            "-p", str(pg.port), "-U", "mspflow", "-d", "mspflow"]


class Chainer:
    """The server's chainer (audit/chainer.c), from one psql session: a
    pass, then 500 ms of rest unless the batch came back full."""

    def __init__(self):
        self.p = subprocess.Popen(psql_cmd(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.stop = threading.Event()
        self.chained = 0
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    def one(self):
        self.p.stdin.write(f"SELECT platform.audit_chain_due({BATCH});\n")
        self.p.stdin.flush()
        n = int(self.p.stdout.readline())
        self.chained += n
        return n

    def loop(self):
        while not self.stop.is_set():
            if self.one() < BATCH:
                self.stop.wait(0.5)

    def close(self):
        self.stop.set()
        self.th.join()
        self.p.stdin.close()
        self.p.wait()


def pgbench(path, seconds, clients=16):
    r = subprocess.run([os.path.join(pg.bindir, "pgbench"), "-n", "-c", str(clients), "-j", "2", "-T",
                        str(seconds), "-f", path, "-h", pg.sock, "-p", str(pg.port), "-U", "mspflow", "mspflow"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("pgbench: " + r.stderr)
    return float(next(line.split()[2] for line in r.stdout.splitlines() if line.startswith("tps = ")))


def script(kind, tenants):
    path = os.path.join(d, f"{kind}-{tenants}.sql")
    with open(path, "w") as f:
        f.write(f"\\set t random(1, {tenants})\nINSERT INTO {TABLE[kind]} {COLS} VALUES ({TENANT}, {ROW});\n")
    os.chmod(path, 0o644)
    return path


def writers(kind, tenants):
    # every run starts with nothing unchained: the chainer measured with
    # the writers works off what they write, not an earlier run's rows
    pg.psql("SELECT platform.audit_chain_due(1000000000)")
    pg.psql("CHECKPOINT")
    chainer = Chainer() if kind == "chained" else None
    tps = pgbench(script(kind, tenants), secs)
    if chainer:
        chainer.close()
    return tps, chainer.chained if chainer else 0


def chain_backlog(tenants):
    """Rows chained per second working off a backlog of unchained rows."""
    pg.psql(f"SELECT platform.audit_chain_due(1000000000)")     # nothing left from before
    pg.psql(f"INSERT INTO platform.audit_events {COLS} SELECT ('00000000-0000-4000-a000-' || "
            f"lpad((1 + g % {tenants})::text, 12, '0'))::uuid, {ROW} FROM generate_series(1, {backlog}) g")
    pg.psql("VACUUM ANALYZE platform.audit_events")
    c = Chainer.__new__(Chainer)
    c.p = subprocess.Popen(psql_cmd(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    c.chained = 0
    t0 = time.monotonic()
    while c.one() > 0:
        pass
    dt = time.monotonic() - t0
    c.p.stdin.close()
    c.p.wait()
    left = int(pg.psql("SELECT count(*) FROM platform.audit_events WHERE hash IS NULL"))
    if c.chained != backlog or left != 0:
        raise SystemExit(f"chainer: chained {c.chained} of {backlog}, {left} left")
    return round(backlog / dt)


KINDS = ("plain", "unlinked", "chained")
res = {"seconds": secs, "clients": 16, "chainer_batch": BATCH, "postgresql": {"fsync": "on" if durable else "off"}}
for tenants in (1, 64):
    got = {k: [] for k in KINDS}
    linked = []
    for _ in range(2):   # interleaved: drift hits all alike
        for kind in KINDS:
            tps, n = writers(kind, tenants)
            got[kind].append(tps)
            if kind == "chained":
                linked.append(n)
            print(f"{tenants} tenant(s), {kind}: {tps:.0f} writes/s" +
                  (f" (chainer linked {n} meanwhile)" if kind == "chained" else ""), file=sys.stderr)
    c, u, p = sum(got["chained"]) / 2, sum(got["unlinked"]) / 2, sum(got["plain"]) / 2
    res[f"tenants_{tenants}"] = {"chained_writes_per_s": round(c), "unlinked_writes_per_s": round(u),
                                 "plain_writes_per_s": round(p), "chained_vs_plain": round(c / p, 2),
                                 "unlinked_vs_plain": round(u / p, 2), "runs": got,
                                 "linked_during_writes": linked,
                                 "unchained_after_writes": int(pg.psql(
                                     "SELECT count(*) FROM platform.audit_events WHERE hash IS NULL"))}
for tenants in (1, 64):
    rate = chain_backlog(tenants)
    print(f"chainer, backlog of {backlog} rows over {tenants} tenant(s): {rate} rows/s", file=sys.stderr)
    res[f"chainer_tenants_{tenants}"] = {"backlog": backlog, "rows_chained_per_s": rate}
stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
with open(os.path.join(ROOT, "bench", "results", f"audit-{stamp}.json"), "w") as f:
    json.dump(res, f, indent=2)
print(json.dumps(res, indent=2))
pg.cleanup()
