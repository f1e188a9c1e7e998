"""The window rate limiter holds cluster-wide: two test servers (2 workers
each) on one PostgreSQL lease from one budget per key.  Hammered by 32
connections for whole windows, each key admits between 90% and 100% of its
limit; Retry-After is honest; with PostgreSQL stopped the servers keep
answering 200/429 from local budgets, and lease again once it is back.

Windows are aligned to the epoch; each response is attributed to its window
from RateLimit-Reset (the window's end is now + reset, a multiple of W), so
counts cannot smear across a boundary."""
import http.client
import math
import threading
import time
import unittest
import uuid

from mfharness import TESTSRV, PgCluster, Server, request, run_migrate, wait_all_ok

LIMIT, W = 1000, 10
FALLBACK_MSG = "cannot lease from the database; limiting locally for the rest of the window"


def window_of_response(t_recv, reset):
    # the window ends at t_recv + reset (reset is rounded up by at most 1 s,
    # plus the response's latency): round to the nearest multiple of W
    return int(round((t_recv + reset) / W)) * W - W


class Hammer:
    """threads_per[(port, key)] connections, each sending requests back to
    back until stop(); every answer is recorded as (key, port, window, status)."""

    def __init__(self, targets, limit=LIMIT, window=W):
        self.records, self.errors = [], []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(port, key, limit, window), daemon=True)
                        for port, key in targets]
        for t in self.threads:
            t.start()

    def _run(self, port, key, limit, window):
        conn, out = None, []
        path = f"/rl/{key}?limit={limit}&window={window}"
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                t = time.time()
                reset = int(r.getheader("RateLimit-Reset", "0"))
                out.append((key, port, window_of_response(t, reset), r.status, r.getheader("Retry-After")))
            except Exception as e:  # a hang shows up here as a timeout
                with self.lock:
                    self.errors.append(repr(e))
                if conn is not None:
                    conn.close()
                conn = None
        if conn is not None:
            conn.close()
        with self.lock:
            self.records.extend(out)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        return self.records

    def admitted(self, key, window):
        return sum(1 for k, _, w, s, _ in self.records if k == key and w == window and s == 200)

    def answered(self, key, window):
        return sum(1 for k, _, w, _, _ in self.records if k == key and w == window)


def sleep_until(t):
    while time.time() < t:
        time.sleep(min(0.05, max(0.0, t - time.time())))


def next_window_start(after):
    return math.ceil(after / W) * W


class RateLimitClusterTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        r = run_migrate(cls.pg)
        assert r.returncode == 0, r.stderr
        # windows for the cleanup to find: one that ended more than an hour
        # ago (deleted) and one that ended less than an hour ago (kept)
        now = int(time.time())
        cls.pg.psql("INSERT INTO platform.rate_windows VALUES "
                    f"('t:ended-long-ago', 10, {now - 3700 - now % 10}, 5, 5), "
                    f"('t:ended-recently', 3600, {now - now % 3600 - 3600}, 5, 5)")
        cls.srvs = [Server(cls.pg, binary=TESTSRV, config={"workers": 2, "db_pool_size": 2})
                    for _ in range(2)]
        for s in cls.srvs:
            assert wait_all_ok(s.port, "/db/sleep?ms=1", 15), "every worker's pool is up"

    @classmethod
    def tearDownClass(cls):
        rcs = [s.stop() for s in cls.srvs]
        cls.pg.cleanup()
        assert rcs == [0, 0], rcs

    def ports(self):
        return [s.port for s in self.srvs]

    def targets(self, keys):
        # 32 connections: per key 16, split evenly over the two instances
        return [(port, key) for key in keys for port in self.ports() for _ in range(8)]

    def fallback_warnings(self):
        return sum(1 for s in self.srvs for l in s.logs() if l.get("msg") == FALLBACK_MSG)

    def measure(self, keys, windows=1):
        """Hammers keys from 1 s before a window boundary to 0.5 s after the
        end of `windows` whole windows; returns (hammer, [window starts])."""
        first = next_window_start(time.time() + 1.5)
        sleep_until(first - 1.0)
        h = Hammer(self.targets(keys))
        sleep_until(first + windows * W + 0.5)
        h.stop()
        return h, [first + i * W for i in range(windows)]

    def test_1_cluster_wide_limit(self):
        keys = ["t:" + str(uuid.uuid4()), "c:" + str(uuid.uuid4())]
        warned = self.fallback_warnings()
        h, (win,) = self.measure(keys)
        self.assertEqual(h.errors, [], "every request was answered")
        statuses = {s for _, _, _, s, _ in h.records}
        self.assertLessEqual(statuses, {200, 429}, "only 200 and 429")
        for key in keys:
            n, total = h.admitted(key, win), h.answered(key, win)
            per_port = {p: sum(1 for k, pp, w, s, _ in h.records if k == key and pp == p and w == win and s == 200)
                        for p in self.ports()}
            print(f"# {key[:2]} window {win}: admitted {n} of {total} requests (limit {LIMIT}); "
                  f"per instance {list(per_port.values())}")
            self.assertGreater(total, 2 * LIMIT, "the key was hammered well past its limit")
            self.assertLessEqual(n, LIMIT, "never more than the limit cluster-wide")
            self.assertGreaterEqual(n, 0.9 * LIMIT, "at most 10% of the budget wasted")
            for _, _, w, s, ra in h.records:
                if s == 429:
                    self.assertTrue(ra is not None and 1 <= int(ra) <= W, f"Retry-After {ra}")
        self.assertEqual(self.fallback_warnings(), warned, "the database answered every lease")
        rows = self.pg.psql(f"SELECT used FROM platform.rate_windows WHERE key = '{keys[0]}' "
                            f"AND window_s = {W} AND window_start = {win}")
        self.assertTrue(rows and int(rows) <= LIMIT, f"the database granted {rows}")

    def test_0_old_windows_are_deleted(self):
        deadline = time.time() + 30  # the first cleanup runs 2 s after start
        while time.time() < deadline and self.pg.psql(
                "SELECT count(*) FROM platform.rate_windows WHERE key = 't:ended-long-ago'") != "0":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT string_agg(key, ',') FROM platform.rate_windows "
                                      "WHERE key LIKE 't:ended-%'"), "t:ended-recently")

    def test_2_retry_after_is_honest(self):
        key, port = "t:" + str(uuid.uuid4()), self.ports()[0]
        for attempt in range(3):
            # start just after a 5 s boundary so the 6 requests share a window
            sleep_until(math.ceil(time.time() / 5) * 5 + 0.2)
            got = [request(port, "GET", f"/rl/{key}?limit=5&window=5") for _ in range(6)]
            if got[-1].status == 429:
                break
        self.assertEqual([r.status for r in got], [200] * 5 + [429])
        self.assertEqual([int(r.headers["ratelimit-remaining"]) for r in got[:5]], [4, 3, 2, 1, 0])
        r = got[-1]
        self.assertEqual(r.headers["ratelimit-limit"], "5")
        self.assertEqual(r.headers["retry-after"], r.headers["ratelimit-reset"])
        wait = int(r.headers["retry-after"])
        self.assertTrue(1 <= wait <= 5, wait)
        self.assertEqual(request(port, "GET", f"/rl/{key}?limit=5&window=5").status, 429, "still refused")
        time.sleep(wait)
        self.assertEqual(request(port, "GET", f"/rl/{key}?limit=5&window=5").status, 200,
                         "admitted after Retry-After")

    def test_3_database_down_then_back(self):
        key = "t:" + str(uuid.uuid4())
        first = next_window_start(time.time() + 1.5)
        sleep_until(first - 1.0)
        h = Hammer(self.targets([key]))
        try:
            sleep_until(first + 2)
            self.pg.stop()
            t_stop = time.time()
            # the whole next window runs without the database
            down_win = next_window_start(t_stop + 0.5)
            sleep_until(down_win + W + 0.5)
        finally:
            recs = h.stop()
        self.assertEqual(h.errors, [], "no request hung or failed while the database was down")
        self.assertLessEqual({s for _, _, _, s, _ in recs}, {200, 429}, "no 5xx: local limits instead")
        n = h.admitted(key, down_win)
        print(f"# database down, window {down_win}: admitted {n} of {h.answered(key, down_win)} "
              f"(local budgets: limit/2 per worker, 4 workers)")
        self.assertGreater(n, 0, "still admitting")
        self.assertLessEqual(n, 2 * LIMIT, "each worker within limit/sharers")
        self.assertGreater(self.fallback_warnings(), 0, "the fallback was logged")
        self.assertLess(self.fallback_warnings(), 20, "once per window, not per request")

        self.pg.start()
        for s in self.srvs:
            self.assertTrue(wait_all_ok(s.port, "/db/sleep?ms=1", 20), "every pool reconnected")
        warned = self.fallback_warnings()
        h, (win,) = self.measure([key])
        self.assertEqual(h.errors, [])
        n = h.admitted(key, win)
        print(f"# database back, window {win}: admitted {n} of {h.answered(key, win)}")
        self.assertEqual(self.fallback_warnings(), warned, "leasing again")
        self.assertTrue(0.9 * LIMIT <= n <= LIMIT, n)


if __name__ == "__main__":
    unittest.main(verbosity=2)
