"""Migrations over the platform schema and many tenant schemas:
idempotent, per-schema transactions, resumable after failure or SIGKILL,
safe to run concurrently."""
import json
import signal
import subprocess
import time
import unittest

from mfharness import BIN, PgCluster, run_migrate, write_config, _tmpdir


def summary(proc):
    return json.loads(proc.stdout.strip().splitlines()[-1])


class MigrateTest(unittest.TestCase):
    def setUp(self):
        self.pg = PgCluster()

    def tearDown(self):
        self.pg.cleanup()

    def add_tenants(self, n, start=0):
        self.pg.psql("INSERT INTO platform.tenants (kind, name, slug) VALUES ('platform', 'Platform', 'platform') "
                     "ON CONFLICT DO NOTHING")
        self.pg.psql(
            "INSERT INTO platform.tenants (parent_id, kind, name, slug, schema_name) "
            "SELECT (SELECT id FROM platform.tenants WHERE kind = 'platform'), 'msp', 'T' || i, 't' || i, "
            f"'t_' || lpad(i::text, 5, '0') FROM generate_series({start + 1}, {start + n}) i")

    def versions(self, schema):
        return self.pg.psql(f"SELECT string_agg(version::text, ',' ORDER BY version) FROM {schema}.schema_migrations")

    def test_fresh_then_idempotent(self):
        r = run_migrate(self.pg)
        self.assertEqual(r.returncode, 0, r.stderr)
        s = summary(r)
        self.assertEqual(s["schemas"], 1)
        self.assertGreaterEqual(s["applied"], 1)
        self.assertEqual(self.versions("platform"), ",".join(str(i) for i in range(1, s["platform_version"] + 1)))
        self.add_tenants(5)
        s = summary(run_migrate(self.pg))
        self.assertEqual((s["schemas"], s["changed"]), (6, 5))
        for i in range(1, 6):
            self.assertEqual(self.versions(f"t_{i:05d}"),
                             ",".join(str(v) for v in range(1, s["tenant_version"] + 1)))
            self.assertEqual(self.pg.psql(f"SELECT count(*) FROM t_{i:05d}.settings"), "0")
        s = summary(run_migrate(self.pg))
        self.assertEqual((s["changed"], s["applied"]), (0, 0), "re-running changes nothing")

    def test_failure_in_one_schema_then_resume(self):
        first = run_migrate(self.pg)
        self.assertEqual(first.returncode, 0)
        every = ",".join(str(v) for v in range(1, summary(first)["tenant_version"] + 1))
        self.add_tenants(5)
        # plant an object that makes the third schema's migration fail
        self.pg.psql("CREATE SCHEMA t_00003; CREATE TABLE t_00003.settings (x int)")
        r = run_migrate(self.pg)
        self.assertEqual(r.returncode, 1)
        self.assertIn("t_00003", r.stderr)
        self.assertEqual(self.versions("t_00001"), every)
        self.assertEqual(self.versions("t_00002"), every)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 't_00003' "
                                      "AND tablename = 'schema_migrations'"), "0",
                         "the failed schema's transaction left nothing behind")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 't_00004'"), "0",
                         "the run stopped at the failure")
        self.pg.psql("DROP TABLE t_00003.settings")
        s = summary(run_migrate(self.pg))
        self.assertEqual(s["changed"], 3)
        for i in range(1, 6):
            self.assertEqual(self.versions(f"t_{i:05d}"), every)

    def test_sigkill_midway_then_resume(self):
        self.assertEqual(run_migrate(self.pg).returncode, 0)
        self.add_tenants(300)
        d = _tmpdir("mspflow-cfg-")
        cfg = d + "/m.conf"
        write_config(cfg, {"database_url": self.pg.conninfo})
        p = subprocess.Popen([BIN, "migrate", "--config", cfg], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 20
        while time.time() < deadline:
            done = int(self.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations' "
                                    "AND schemaname LIKE 't\\_%'"))
            if done >= 20 or p.poll() is not None:
                break
            time.sleep(0.01)
        self.assertIsNone(p.poll(), "the run was still going when it was killed")
        p.send_signal(signal.SIGKILL)
        p.wait()
        # let the server notice the dead client and abort its open transaction
        deadline = time.time() + 10
        while time.time() < deadline and self.pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()") != "0":
            time.sleep(0.05)
        done = int(self.pg.psql("SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations' "
                                "AND schemaname LIKE 't\\_%'"))
        self.assertLess(done, 300, "killed mid-way, not after the end")
        s = summary(run_migrate(self.pg))
        self.assertEqual(s["schemas"], 301)
        self.assertEqual(s["changed"], 300 - done, "the re-run resumes exactly where the killed run stopped")
        self.assertEqual(s["applied"], (300 - done) * s["tenant_version"])
        counts = self.pg.psql("SELECT n.nspname FROM pg_namespace n WHERE n.nspname LIKE 't\\_%' ").split()
        self.assertEqual(len(counts), 300)
        bad = self.pg.psql(
            "SELECT count(*) FROM platform.tenants t WHERE t.schema_name IS NOT NULL AND NOT EXISTS ("
            " SELECT 1 FROM pg_tables WHERE schemaname = t.schema_name AND tablename = 'settings')")
        self.assertEqual(bad, "0", "every schema is fully migrated after the re-run")
        # each version recorded exactly once in every schema (versions 1..latest)
        latest = s["tenant_version"]
        wrong = self.pg.psql(
            "SELECT count(*) FROM (SELECT query_to_xml(format("
            "'SELECT count(*) AS n, max(version) AS hi FROM %I.schema_migrations', schema_name), false, true, '') x "
            "FROM platform.tenants WHERE schema_name IS NOT NULL) c "
            f"WHERE (xpath('/row/n/text()', x))[1]::text::int <> {latest} "
            f"OR (xpath('/row/hi/text()', x))[1]::text::int <> {latest}")
        self.assertEqual(wrong, "0", "every tenant schema has each version exactly once")

    def test_concurrent_runs_apply_each_version_once(self):
        self.add_tenants_after_platform = None
        first = run_migrate(self.pg)
        self.assertEqual(first.returncode, 0)
        tenant_version = summary(first)["tenant_version"]
        self.add_tenants(50)
        d = _tmpdir("mspflow-cfg-")
        cfg = d + "/m.conf"
        write_config(cfg, {"database_url": self.pg.conninfo})
        procs = [subprocess.Popen([BIN, "migrate", "--config", cfg], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
        outs = [p.communicate(timeout=120) for p in procs]
        self.assertEqual([p.returncode for p in procs], [0, 0, 0], [o[1] for o in outs])
        applied = sum(json.loads(o[0].strip().splitlines()[-1])["applied"] for o in outs)
        self.assertEqual(applied, 50 * tenant_version, "each tenant migration applied exactly once across the runs")


if __name__ == "__main__":
    unittest.main(verbosity=2)
