"""PostgreSQL goes away under a running server and comes back: requests
get 503 + Retry-After meanwhile, and the server recovers by itself."""
import time
import unittest

from mfharness import TESTSRV, PgCluster, Server, request, run_migrate, wait_all_ok


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
                # each worker thread has its own pool with its own backoff, so
                # one ready answer proves one pool; wait until a run of
                # requests (spread over the workers) all succeed
                self.assertTrue(wait_all_ok(srv.port, "/db/sleep?ms=1", 10),
                                f"cycle {cycle}: some worker's pool did not recover")
            body = request(srv.admin_port, "GET", "/metrics").body.decode()
            self.assertRegex(body, r"mspflow_db_reconnects_total [1-9]")
        finally:
            rc = srv.stop()
            pg.cleanup()
        self.assertEqual(rc, 0)

    def test_requests_wake_a_backed_off_pool(self):
        # a long outage grows every connection's backoff to 5 s; when the
        # database returns, arriving requests make one connection retry at
        # once, so service resumes in well under a backoff period
        pg = PgCluster()
        srv = Server(pg, binary=TESTSRV, config={"db_pool_size": 2, "workers": 1})
        try:
            self.assertEqual(wait_status(srv.port, "/db/sleep?ms=1", 200, 10).status, 200)
            pg.stop()
            time.sleep(8)            # no requests: the backoff doubles up to its 5 s cap
            pg.start()
            t0 = time.time()
            while time.time() - t0 < 10 and request(srv.port, "GET", "/db/sleep?ms=1").status != 200:
                time.sleep(0.05)
            took = time.time() - t0
            print(f"# first success {took:.2f} s after PostgreSQL returned")
            self.assertLess(took, 1.0)
        finally:
            rc = srv.stop()
            pg.cleanup()
        self.assertEqual(rc, 0)

    def test_transactions_commit_and_roll_back(self):
        pg = PgCluster()
        pg.psql("CREATE TABLE tx_probe (v int PRIMARY KEY)")
        srv = Server(pg, binary=TESTSRV, config={"db_pool_size": 2})
        try:
            self.assertEqual(wait_status(srv.port, "/db/tx?commit=1&v=1", 200, 10).json(), {"committed": True})
            self.assertEqual(request(srv.port, "GET", "/db/tx?commit=0&v=2").json(), {"committed": False})
            r = request(srv.port, "GET", "/db/tx?commit=1&v=1")
            self.assertEqual(r.status, 409, "a unique violation inside the transaction is a conflict")
            self.assertEqual(r.json()["code"], "conflict")
            r = request(srv.port, "GET", "/db/tx?commit=1&fail=1")
            self.assertEqual(r.status, 500, "COMMIT after a failed statement is not reported as committed")
            self.assertEqual(r.json()["code"], "internal_error")
            for i in range(3, 23):
                self.assertEqual(request(srv.port, "GET", f"/db/tx?commit=1&v={i}").status, 200)
            self.assertEqual(pg.psql("SELECT string_agg(v::text, ',' ORDER BY v) FROM tx_probe WHERE v < 3"), "1",
                             "the rolled-back and the failed insert left nothing")
            self.assertEqual(pg.psql("SELECT count(*) FROM tx_probe"), "21")
            self.assertEqual(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'"),
                             "0", "no transaction left open on a pooled connection")
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
