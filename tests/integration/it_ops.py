"""Operations endpoints of the real binary against a real PostgreSQL:
/healthz, /readyz (migrated or not), /metrics on the admin listener, and
the access log."""
import re
import unittest

from mfharness import PgCluster, Server, request, run_migrate


class OpsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.cleanup()

    def test_readyz_needs_migrations(self):
        pg = PgCluster()     # its own, never migrated
        self.addCleanup(pg.cleanup)
        srv = Server(pg)
        try:
            self.assertEqual(request(srv.port, "GET", "/healthz").json(), {"status": "ok"})
            r = request(srv.port, "GET", "/readyz")
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["code"], "migrations_pending")
            m = run_migrate(pg)
            self.assertEqual(m.returncode, 0, m.stderr)
            r = request(srv.port, "GET", "/readyz")
            self.assertEqual(r.status, 200, r.body)
            self.assertEqual(r.json(), {"status": "ready"})
            self.assertEqual(request(srv.admin_port, "GET", "/readyz").status, 200)
        finally:
            self.assertEqual(srv.stop(), 0)

    def test_metrics_and_access_log(self):
        self.assertEqual(run_migrate(self.pg).returncode, 0)
        srv = Server(self.pg)
        try:
            for _ in range(7):
                request(srv.port, "GET", "/healthz?token=s3cr3t-value")
            request(srv.port, "GET", "/nowhere")
            self.assertEqual(request(srv.port, "GET", "/metrics").status, 404, "metrics only on admin")
            body = request(srv.admin_port, "GET", "/metrics").body.decode()
            m = re.search(r'mspflow_http_requests_total\{listener="api",route="/healthz",method="GET",status="200"\} (\d+)', body)
            self.assertIsNotNone(m, body)
            self.assertEqual(int(m.group(1)), 7)
            # /nowhere, and /metrics asked on the API port
            self.assertRegex(body, r'route="unmatched",method="",status="404"\} 2')
            self.assertRegex(body, r'mspflow_http_request_duration_seconds_count\{listener="api",route="/healthz",status="200"\} 7')
            self.assertIn("# TYPE mspflow_http_request_duration_seconds histogram", body)
            self.assertRegex(body, r"mspflow_db_connections\{state=\"open\"\} [1-9]")
            for _ in range(3):
                request(srv.port, "GET", "/healthz")
            body2 = request(srv.admin_port, "GET", "/metrics").body.decode()
            self.assertRegex(body2, r'route="/healthz",method="GET",status="200"\} 10')
            entry = srv.wait_log(lambda o: o.get("module") == "access" and o.get("path") == "/nowhere", 3)
            self.assertIsNotNone(entry)
            for k in ("request_id", "route", "status", "duration_ms", "method", "tenant_id"):
                self.assertIn(k, entry)
            self.assertEqual(entry["status"], 404)
        finally:
            self.assertEqual(srv.stop(), 0)
        self.assertNotIn("s3cr3t-value", srv.output(), "query strings never reach the log")


if __name__ == "__main__":
    unittest.main(verbosity=2)
