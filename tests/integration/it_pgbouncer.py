"""mspflow behind PgBouncer in transaction mode (docs/scale-out.md).

Two `mspflow serve` processes reach PostgreSQL through Debian's pgbouncer
with pool_mode = transaction and a pool of 5 server connections, fewer
than the 16 client connections their pools open.  Session state does not
survive a transaction there, so `direct_database_url` names PostgreSQL
itself for what needs a session: the LISTEN connections of the engine and
the webhook outbox, and the signing-key lock at start (`mspflow migrate`
uses it too).  Checked through the pooler: identity (tokens), tenant
provisioning (schema creation and its migrations in one transaction),
events -> runs with http steps, outbound webhooks, both woken by NOTIFY
(the poll is set to 30 s, so only a working LISTEN finishes them in
time), the cluster-wide rate limiter, and that the LISTEN sessions are
not pooler connections.

pgbouncer missing: the test fails under CI=true (infra/deps installs it)
and is skipped elsewhere."""
import os
import shutil
import signal
import socket
import subprocess
import time
import unittest

from it_ratelimit_tenant import burst, wait_window_start
from mfengine import EngineEnv, peer_keys, succeeded_steps
from mfharness import PgCluster, _procs, _tmpdir, run_migrate, write_config
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

POOL = 5


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class PgBouncer:
    """pgbouncer in transaction mode in front of a PgCluster, on
    127.0.0.1; runs as the cluster's user (it refuses root)."""

    def __init__(self, pg, pool_size=POOL):
        self.pg = pg
        self.exe = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        self.dir = _tmpdir("mspflow-bouncer-")
        self.port = free_port()
        ini = os.path.join(self.dir, "pgbouncer.ini")
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            f.write('"mspflow" ""\n')
        with open(ini, "w") as f:
            f.write(f"""[databases]
mspflow = host={pg.sock} port={pg.port} dbname=mspflow user=mspflow

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.dir}/users.txt
admin_users = mspflow
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 400
logfile = {self.dir}/pgbouncer.log
pidfile = {self.dir}/pgbouncer.pid
""")
        if pg.as_root:
            for p in (self.dir, ini, os.path.join(self.dir, "users.txt")):
                os.chown(p, pg.uid, pg.gid)
        self.proc = subprocess.Popen([self.exe, ini], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=pg._demote)
        _procs.append(self.proc)
        self.conninfo = f"host=127.0.0.1 port={self.port} dbname=mspflow user=mspflow"
        ok = wait_until(lambda: self._psql("mspflow", "SELECT 1", check=False) == "1", 20, 0.1)
        if not ok:
            raise RuntimeError("pgbouncer did not start: " + self.log()[-2000:])

    def log(self):
        try:
            return open(os.path.join(self.dir, "pgbouncer.log")).read()
        except OSError:
            return ""

    def _psql(self, db, sql, check=True):
        r = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-X", "-q", "-At", "-h", "127.0.0.1",
                            "-p", str(self.port), "-U", "mspflow", "-d", db, "-c", sql],
                           capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError(f"psql via pgbouncer failed: {r.stderr}")
        return r.stdout.strip() if r.returncode == 0 else None

    def show(self, what):
        """SHOW <what> of the admin console as a list of dicts."""
        r = subprocess.run([os.path.join(self.pg.bindir, "psql"), "-X", "-q", "-A", "-F", "\t", "-h",
                            "127.0.0.1", "-p", str(self.port), "-U", "mspflow", "-d", "pgbouncer", "-c",
                            f"SHOW {what}"], capture_output=True, text=True, check=True)
        lines = [l for l in r.stdout.splitlines() if l and not l.startswith("(")]
        head = lines[0].split("\t")
        return [dict(zip(head, l.split("\t"))) for l in lines[1:]]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(30)


def have_pgbouncer():
    return shutil.which("pgbouncer") or os.path.exists("/usr/sbin/pgbouncer")


@unittest.skipUnless(have_pgbouncer() or os.environ.get("CI") == "true",
                     "pgbouncer is not installed (infra/deps installs it)")
class PgBouncerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not have_pgbouncer():
            raise AssertionError("pgbouncer is not installed: CI must run infra/deps")
        cls.mock = MockServer({"/effect": lambda rec: Reply(200, {"ok": True}),
                               "/hook": lambda rec: Reply(204)})
        pg = PgCluster()
        cls.bouncer = PgBouncer(pg)
        # migrate and bootstrap go to PostgreSQL itself (Platform does both);
        # the servers go through the pooler, with the direct URL for sessions
        cls.env = EngineEnv(pg=pg, servers=2, config={
            "database_url": cls.bouncer.conninfo, "direct_database_url": pg.conninfo,
            "engine_poll_ms": 30000, "db_pool_size": 4, "workers": 2,
            "auth_ip_rate": 1000000, "auth_ip_burst": 1000000})
        cls.pg = pg

    @classmethod
    def tearDownClass(cls):
        rcs = [s.stop() for s in cls.env.p.servers]
        cls.bouncer.stop()
        pg_log = ""
        cls.pg.cleanup()
        cls.mock.close()
        assert rcs == [0, 0], (rcs, pg_log)

    def test_0_pool_is_shared(self):
        # each server: 2 workers x 4 pool connections through the pooler
        ok = wait_until(lambda: len([c for c in self.bouncer.show("CLIENTS") if c["database"] == "mspflow"]) >= 16,
                        20, 0.2)
        clients = [c for c in self.bouncer.show("CLIENTS") if c["database"] == "mspflow"]
        servers = [s for s in self.bouncer.show("SERVERS") if s["database"] == "mspflow"]
        print(f"# {len(clients)} client connections share {len(servers)} server connections")
        self.assertTrue(ok, f"{len(clients)} clients")
        self.assertLessEqual(len(servers), POOL)
        for s in self.env.p.servers:
            self.assertEqual(api(s.port, "GET", "/readyz").status, 200)

    def test_1_provisioning_and_identity(self):
        p = self.env.p
        c = p.create_client(self.env.msp["id"], "bouncer-client", token=self.env.msp_tok,
                            port=p.servers[1].port)
        schema = self.env.tenant_schema(c["id"])
        self.assertTrue(schema.startswith("t_"))
        v = self.pg.psql(f"SELECT max(version) FROM {schema}.schema_migrations")
        latest = self.pg.psql(f"SELECT max(version) FROM {self.env.schema}.schema_migrations")
        self.assertEqual(v, latest, "the new schema is fully migrated")
        tok = p.token(c["id"], port=p.servers[1].port)
        for s in p.servers:
            r = api(s.port, "GET", f"/v1/tenants/{c['id']}", tok)
            self.assertEqual(r.status, 200, r.body)
        # migrate again through the direct URL while the servers run
        d = _tmpdir("mspflow-cfg-")
        cfg = os.path.join(d, "m.conf")
        write_config(cfg, {"database_url": self.bouncer.conninfo, "direct_database_url": self.pg.conninfo})
        from mfharness import BIN
        r = subprocess.run([BIN, "migrate", "--config", cfg], capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_2_runs_and_webhooks_woken_by_notify(self):
        env = self.env
        env.connector("peer", f"http://localhost:{self.mock.port}")
        r = env.call("PUT", "/workflows/bounce", {"trigger": {"event": "test.bounce"}, "steps": [
            {"id": "one", "type": "http", "connector": "peer", "method": "POST", "path": "/effect/one",
             "body": {"n": "{{ data.n }}"}, "output": {"ok": "response.body.ok"}},
            {"id": "mid", "type": "transform", "output": {"ok": "steps.one.output.ok"}},
            {"id": "two", "type": "http", "connector": "peer", "method": "POST", "path": "/effect/two",
             "body": {"n": "{{ data.n }}"}}]})
        self.assertEqual(r.status, 201, r.body)
        r = env.call("PUT", "/webhooks/sink", {"url": f"http://localhost:{self.mock.port}/hook",
                                               "events": ["test.*"]})
        self.assertEqual(r.status, 201, r.body)
        time.sleep(2.5)  # runners and delivery workers have claimed once and now only listen

        ports = [s.port for s in env.p.servers]
        runs, events = [], set()
        t0 = time.time()
        for i in range(20):
            r = api(ports[i % 2], "POST", f"/v1/tenants/{env.tid}/events", env.msp_tok,
                    {"type": "test.bounce", "data": {"n": i}})
            self.assertEqual(r.status, 202, r.body)
            runs += r.json()["run_ids"]
            events.add(r.json()["event_id"])
        self.assertEqual(len(runs), 20)
        # the idle poll is 30 s: finishing well before it takes the NOTIFY
        ok = wait_until(lambda: env.states().get("succeeded", 0) == 20, 20, 0.2)
        took = time.time() - t0
        self.assertTrue(ok, env.states())
        print(f"# 20 runs of 2 http steps succeeded {took:.1f} s after the first event (poll 30 s)")
        keys = peer_keys(self.mock)
        self.assertLessEqual({f"{r}:{s}" for r in runs for s in ("one", "two")}, set(keys))
        per = succeeded_steps(env)
        self.assertEqual({st for (rid, st) in per if rid in runs}, {"one", "mid", "two"})
        self.assertTrue(all(c == 1 for c in per.values()))

        def delivered():
            return {rec.json().get("id") for rec in self.mock.seen("/hook")}
        self.assertTrue(wait_until(lambda: events <= delivered(), 20, 0.2), "every event was delivered")

        # the LISTEN sessions are PostgreSQL's own, not pooler connections
        pooled = {s["remote_pid"] for s in self.bouncer.show("SERVERS")}
        listening = self.pg.psql("SELECT string_agg(pid::text, ',') FROM pg_stat_activity "
                                 "WHERE query LIKE 'LISTEN %'").split(",")
        # 2 servers x 2 workers x (engine + outbox)
        self.assertEqual(len(listening), 8, listening)
        self.assertFalse(set(listening) & pooled, "no LISTEN through the pooler")

    def test_3_rate_limit_through_the_pooler(self):
        env, p = self.env, self.env.p
        c = p.create_client(env.msp["id"], "bouncer-rl", token=env.msp_tok)
        r = api(p.port, "PUT", f"/v1/tenants/{c['id']}/policy", env.msp_tok,
                {"rate_limit": {"window": "PT10S", "tenant_requests": 200, "client_requests": 200}})
        self.assertEqual(r.status, 200, r.body)
        time.sleep(1.2)
        tok = p.token(c["id"])
        wait_window_start()
        counts = burst([s.port for s in p.servers], f"/v1/tenants/{c['id']}/access", tok, conns=16, seconds=4.0)
        print(f"# admitted {counts.get(200, 0)} of limit 200 through the pooler, refused {counts.get(429, 0)}")
        self.assertEqual(set(counts) - {200, 429}, set(), counts)
        self.assertLessEqual(counts.get(200, 0), 200)
        self.assertGreaterEqual(counts.get(200, 0), 180)
        self.assertEqual(self.bouncer.log().count("ERROR"), 0, self.bouncer.log()[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
