"""PostgreSQL goes away under a running server and comes back: requests
get 503 + Retry-After meanwhile, and the server recovers by itself."""
import time
import unittest

from mfharness import TESTSRV, PgCluster, Server, request, run_migrate


def wait_status(port, path, status, timeout):
    deadline = time.time() + timeout
    r = None
    while time.time() < deadline:
        r = request(port, "GET", path)
        if r.status == status:
            return r
        time.sleep(0.1)
    return r


class PgRecoveryTest(unittest.TestCase):
    def test_database_restart(self):
        pg = PgCluster()
        self.assertEqual(run_migrate(pg).returncode, 0)
        srv = Server(pg, binary=TESTSRV, config={"db_pool_size": 2, "db_retry_after_s": 3})
        try:
            self.assertEqual(wait_status(srv.port, "/readyz", 200, 10).status, 200)
            for cycle in range(2):
                pg.stop()
                r = wait_status(srv.port, "/readyz", 503, 10)
                self.assertEqual(r.status, 503, r.body)
                self.assertEqual(r.json()["code"], "database_unavailable")
                self.assertEqual(r.headers["retry-after"], "3")
                t0 = time.time()
                r = request(srv.port, "GET", "/db/sleep?ms=1")
                self.assertEqual(r.status, 503)
                self.assertLess(time.time() - t0, 2, "fails fast instead of waiting")
                self.assertEqual(request(srv.port, "GET", "/healthz").status, 200)
                pg.start()
                r = wait_status(srv.port, "/readyz", 200, 15)
                self.assertEqual(r.status, 200, f"cycle {cycle}: no recovery: {r.body}")
                self.assertEqual(request(srv.port, "GET", "/db/sleep?ms=1").status, 200)
            body = request(srv.admin_port, "GET", "/metrics").body.decode()
            self.assertRegex(body, r"mspflow_db_reconnects_total [1-9]")
        finally:
            rc = srv.stop()
            pg.cleanup()
        self.assertEqual(rc, 0)

    def test_query_timeout_gives_504_and_pool_survives(self):
        pg = PgCluster()
        srv = Server(pg, binary=TESTSRV, config={"db_pool_size": 1, "db_query_timeout_ms": 500})
        try:
            wait_status(srv.port, "/db/sleep?ms=1", 200, 10)
            r = request(srv.port, "GET", "/db/sleep?ms=3000")
            self.assertEqual(r.status, 504, r.body)
            self.assertEqual(wait_status(srv.port, "/db/sleep?ms=1", 200, 10).status, 200)
        finally:
            srv.stop()
            pg.cleanup()


if __name__ == "__main__":
    unittest.main(verbosity=2)
