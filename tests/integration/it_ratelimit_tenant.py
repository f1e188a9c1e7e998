"""Per-tenant and per-API-client rate limits at the gateway, from the
tenant's policy: a burst from 32 concurrent connections spread over two
instances admits at most the limit, cluster-wide, and at least 90% of it;
429 carries honest Retry-After and RateLimit-* headers; a call refused by
the client limit consumes nothing of the tenant's; the tenant comes from
the verified token only."""
import http.client
import threading
import time
import unittest

from mfidentity import Platform, api, token_for

WINDOW = 10


def wait_window_start(margin=0.3):
    """Sleeps to just after the start of an epoch-aligned window."""
    now = time.time()
    into = now % WINDOW
    if into > margin:
        time.sleep(WINDOW - into + 0.05)
    return time.time()


def burst(ports, path, token, conns=32, seconds=4.0):
    counts = {}
    lock = threading.Lock()
    stop = time.time() + seconds

    def run(port):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        local = {}
        while time.time() < stop:
            c.request("GET", path, headers={"Authorization": "Bearer " + token, "X-Forwarded-For": "10.9.9.9"})
            r = c.getresponse()
            r.read()
            local[r.status] = local.get(r.status, 0) + 1
            if r.status == 429 and local[429] > 20:
                break
        c.close()
        with lock:
            for k, v in local.items():
                counts[k] = counts.get(k, 0) + v
    ts = [threading.Thread(target=run, args=(ports[i % len(ports)],)) for i in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return counts


class TenantRateLimitTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform(config={"auth_ip_rate": 1000000, "auth_ip_burst": 1000000}, servers=2)
        cls.ports = [s.port for s in cls.p.servers]
        cls.msp = cls.p.create_tenant("msp", "rl-msp")
        cls.msp_tok = cls.p.token(cls.msp["id"])

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0, 0]

    def client_with_plan(self, slug, tenant_requests, client_requests):
        c = self.p.create_client(self.msp["id"], slug, token=self.msp_tok)
        r = api(self.p.port, "PUT", f"/v1/tenants/{c['id']}/policy", self.msp_tok,
                {"rate_limit": {"window": f"PT{WINDOW}S", "tenant_requests": tenant_requests,
                                "client_requests": client_requests}})
        self.assertEqual(r.status, 200, r.body)
        time.sleep(1.2)   # every worker's cached plan has expired (auth_cache_ttl_ms = 1000)
        return c

    def test_burst_over_two_instances_holds_the_limit(self):
        limit = 200
        c = self.client_with_plan("rl-burst", limit, limit)
        tok = self.p.token(c["id"])
        path = f"/v1/tenants/{c['id']}/access"
        wait_window_start()
        t0 = time.time()
        counts = burst(self.ports, path, tok)
        self.assertLess(time.time() - t0, WINDOW - 1, "the burst must fit in one window")
        print(f"# admitted {counts.get(200, 0)} of limit {limit}, refused {counts.get(429, 0)}, over 2 instances")
        self.assertEqual(set(counts) - {200, 429}, set(), counts)
        self.assertLessEqual(counts.get(200, 0), limit)
        self.assertGreaterEqual(counts.get(200, 0), int(limit * 0.9))

    def test_429_headers_and_honest_retry_after(self):
        c = self.client_with_plan("rl-retry", 5, 5)
        tok = self.p.token(c["id"])
        path = f"/v1/tenants/{c['id']}/access"
        wait_window_start()
        seen = []
        for _ in range(8):
            r = api(self.p.port, "GET", path, tok)
            seen.append(r.status)
            if r.status == 200:
                self.assertEqual(r.headers["ratelimit-limit"], "5")
                self.assertIn("ratelimit-remaining", r.headers)
                self.assertGreaterEqual(int(r.headers["ratelimit-reset"]), 1)
        self.assertEqual(seen[:5], [200] * 5)
        self.assertEqual(seen[5:], [429] * 3)
        r = api(self.p.port, "GET", path, tok)
        self.assertEqual(r.status, 429)
        self.assertEqual(r.json()["code"], "rate_limited")
        self.assertEqual(r.headers["ratelimit-remaining"], "0")
        ra = int(r.headers["retry-after"])
        self.assertGreaterEqual(ra, 1)
        self.assertLessEqual(ra, WINDOW)
        time.sleep(ra)
        self.assertEqual(api(self.p.port, "GET", path, tok).status, 200)

    def test_client_refusals_consume_nothing_of_the_tenant(self):
        c = self.client_with_plan("rl-refund", 100, 20)
        a = self.p.token(c["id"])
        b = self.p.token(c["id"])
        path = f"/v1/tenants/{c['id']}/access"
        wait_window_start()
        conn = http.client.HTTPConnection("127.0.0.1", self.p.port, timeout=10)
        sa = []
        for _ in range(120):
            conn.request("GET", path, headers={"Authorization": "Bearer " + a})
            r = conn.getresponse()
            r.read()
            sa.append(r.status)
        self.assertEqual(sa.count(200), 20)
        sb = [api(self.p.port, "GET", path, b).status for _ in range(20)]
        self.assertEqual(sb, [200] * 20)

    def test_limits_follow_the_token_not_the_request(self):
        c = self.client_with_plan("rl-who", 3, 3)
        other = self.p.create_client(self.msp["id"], "rl-bystander", token=self.msp_tok)
        tok = self.p.token(c["id"])
        otok = self.p.token(other["id"])
        wait_window_start()
        for _ in range(3):
            self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{c['id']}", tok).status, 200)
        # another path, another instance, a forged forwarding header: still the same tenant's budget
        self.assertEqual(api(self.ports[1], "GET", f"/v1/tenants/{c['id']}/access", tok,
                             headers={"X-Forwarded-For": "203.0.113.9", "X-Tenant-Id": other["id"]}).status, 429)
        # a bystander tenant is untouched
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{other['id']}", otok).status, 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
