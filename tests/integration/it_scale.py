"""Scale-out (issue 8): three processes on one PostgreSQL -- two `mspflow
serve` with the engine on (A and B) and one `mspflow worker` -- under a
steady load: client threads post events over both API processes, each
event starts a run of a branching workflow of http steps to a mock peer
(no approvals, so runs finish alone), while other threads hammer a
rate-limited tenant route through both.  Serve B is killed with SIGKILL
while it holds leased runs, the load goes on through A (posts that fail
are repeated on A with the same Idempotency-Key, as a client would),
then B is started again.

Asserted: no run lost (every accepted event's runs succeed; each http
step's effect reached the peer under exactly one Idempotency-Key, each
key naming one step; every run's timeline holds exactly the steps of its
path, once each); B's leases were taken over by the survivors after they
expired; the tenant's rate limit held in every window (admitted at most
the limit, cluster-wide, measured per window as it_ratelimit.py does) and
was not starved in whole windows that saw no kill.  No speed assertion:
timeouts are generous for a loaded 2-core machine."""
import http.client
import json
import os
import random
import signal
import threading
import time
import unittest
import uuid

from it_ratelimit import window_of_response
from mfengine import EngineEnv, peer_keys, succeeded_steps
from mfharness import Server, write_config
from mfidentity import api, wait_until
from mfmock import MockServer, Reply

LEASE_MS = 5000          # renewed every 1.7 s; a dead process's runs return 5 s after its last renewal
LIMIT, W = 150, 10       # the hammered tenant's limit: 150 requests per 10 s window
POSTERS, HAMMERS = 4, 4  # client threads
POST_GAP = 0.12          # seconds between one poster's events (about 30 events/s in all)

# Even n: a1 -> t -> a2; odd n: b1.  `route` is a decide.
WORKFLOW = {"trigger": {"event": "scale.order"}, "steps": [
    {"id": "route", "type": "decide", "cases": [{"when": "data.n % 2 == 0", "next": "a1"}], "default": "b1"},
    {"id": "a1", "type": "http", "connector": "peer", "method": "POST", "path": "/effect/a1",
     "body": {"n": "{{ data.n }}"}, "output": {"ok": "response.body.ok"},
     "retry": {"max_attempts": 20, "backoff": "PT1S", "max_backoff": "PT2S"}, "timeout": "PT10S"},
    {"id": "t", "type": "transform", "output": {"seen": "steps.a1.output.ok"}},
    {"id": "a2", "type": "http", "connector": "peer", "method": "POST", "path": "/effect/a2",
     "body": {"n": "{{ data.n }}"}, "output": {"ok": "response.body.ok"}, "next": None,
     "retry": {"max_attempts": 20, "backoff": "PT1S", "max_backoff": "PT2S"}, "timeout": "PT10S"},
    {"id": "b1", "type": "http", "connector": "peer", "method": "POST", "path": "/effect/b1",
     "body": {"n": "{{ data.n }}"}, "output": {"ok": "response.body.ok"},
     "retry": {"max_attempts": 20, "backoff": "PT1S", "max_backoff": "PT2S"}, "timeout": "PT10S"},
]}
HTTP_STEPS = {0: ["a1", "a2"], 1: ["b1"]}
PATH_STEPS = {0: {"route", "a1", "t", "a2"}, 1: {"route", "b1"}}

DOWN = (ConnectionError, OSError, http.client.HTTPException)


def send(port, method, path, token, body=None, headers=None, timeout=15):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        h = {"Authorization": "Bearer " + token}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


class Load:
    """Event posters and rate-limit hammers over the API ports that
    `ports()` names at each request; a request that finds its process
    gone moves to the next port."""

    def __init__(self, test, env, ports, post_tokens, rl_path, rl_token):
        self.env, self.ports = env, ports
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.events = {}        # idempotency key -> (n, run_ids)
        self.posts_moved = 0    # posts repeated on another process after a failure
        self.rl = []            # (port, window, status)
        self.rl_moved = 0
        self.problems = []      # answers that should never happen
        self.threads = [threading.Thread(target=self._poster, args=(i, post_tokens[i]), daemon=True)
                        for i in range(POSTERS)]
        self.threads += [threading.Thread(target=self._hammer, args=(i, rl_path, rl_token), daemon=True)
                         for i in range(HAMMERS)]
        for t in self.threads:
            t.start()

    def _post(self, i, token, key, body):
        """The event's answer, repeated under its key until one process
        gives a definitive one: a 202 (the same run ids every time)."""
        path = f"/v1/tenants/{self.env.tid}/events"
        deadline = time.time() + 120
        k = i
        while time.time() < deadline:
            ports = self.ports()
            port = ports[k % len(ports)]
            try:
                st, _, b = send(port, "POST", path, token, body,
                                {"Idempotency-Key": key, "Content-Type": "application/json"})
            except DOWN:
                st, b = None, b""
            if st == 202:
                return json.loads(b)["run_ids"]
            if st not in (None, 503):
                with self.lock:
                    self.problems.append(f"event {key}: {st} {b[:300]!r}")
                return None
            with self.lock:
                self.posts_moved += 1
            k += 1
            time.sleep(0.2)
        with self.lock:
            self.problems.append(f"event {key}: no answer in 120 s")
        return None

    def _poster(self, i, token):
        n = i
        while not self.stopping.is_set():
            key = str(uuid.uuid4())
            body = json.dumps({"type": "scale.order", "data": {"n": n}}).encode()
            rids = self._post(i, token, key, body)
            if rids is not None:
                with self.lock:
                    self.events[key] = (n, rids)
            n += POSTERS
            time.sleep(POST_GAP)

    def _hammer(self, i, path, token):
        k = i
        while not self.stopping.is_set():
            ports = self.ports()
            port = ports[k % len(ports)]
            try:
                st, h, b = send(port, "GET", path, token, headers={"X-Forwarded-For": "10.9.9.9"})
            except DOWN:
                with self.lock:
                    self.rl_moved += 1
                k += 1
                time.sleep(0.05)
                continue
            t = time.time()
            if st not in (200, 429) or "ratelimit-reset" not in h:
                with self.lock:
                    self.problems.append(f"rate-limited route: {st} {b[:300]!r}")
                continue
            with self.lock:
                self.rl.append((port, window_of_response(t, int(h["ratelimit-reset"])), st))
            time.sleep(0.005)

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(180)

    def admitted(self):
        """{window start: (admitted, answered)}"""
        out = {}
        with self.lock:
            for _, w, st in self.rl:
                a, n = out.get(w, (0, 0))
                out[w] = (a + (st == 200), n + 1)
        return out


def leases(env):
    """{run_id: (owner, due_at)} of the leased rows of the queue."""
    rows = env.psql("SELECT run_id, owner, due_at FROM platform.run_queue WHERE owner IS NOT NULL")
    return {r: (o, d) for r, o, d in (l.split("|") for l in rows.splitlines() if l)}


class ScaleTest(unittest.TestCase):
    def test_three_processes_one_killed_under_load(self):
        mock = MockServer({"/effect": lambda rec: Reply(200, {"ok": True}, delay=random.uniform(0.1, 0.4))})
        env = EngineEnv(config={"engine_lease_ms": LEASE_MS, "auth_ip_rate": 1000000,
                                "auth_ip_burst": 1000000}, servers=2)
        worker = None
        load = None
        try:
            p = env.p
            env.connector("peer", f"http://localhost:{mock.port}")
            # room for every run in flight: the default of 20 would make the
            # runners queue behind the tenant's limit, not behind each other
            r = api(env.port, "PUT", f"/v1/tenants/{env.tid}/policy", env.msp_tok,
                    {"engine": {"max_concurrent_runs": 500}})
            self.assertEqual(r.status, 200, r.body)
            r = env.call("PUT", "/workflows/order", WORKFLOW)
            self.assertEqual(r.status, 201, r.body)

            rl_client = p.create_client(env.msp["id"], "scale-rl")
            r = api(env.port, "PUT", f"/v1/tenants/{rl_client['id']}/policy", env.msp_tok,
                    {"rate_limit": {"window": f"PT{W}S", "tenant_requests": LIMIT, "client_requests": LIMIT}})
            self.assertEqual(r.status, 200, r.body)
            rl_token = p.token(rl_client["id"])
            post_tokens = [p.token(env.tid) for _ in range(POSTERS)]  # one API client each: its own budget

            cfg = dict(p.config, database_url=p.pg.conninfo, listen="127.0.0.1:0",
                       admin_listen="127.0.0.1:0", workers=1)
            wpath = os.path.join(p.pg.dir, "worker.conf")
            write_config(wpath, cfg)
            worker = Server(args=["worker", "--config", wpath])
            time.sleep(1.2)  # every worker's cached policies have expired (auth_cache_ttl_ms = 1000)

            a, b = p.servers
            state = {"ports": [a.port, b.port]}
            load = Load(self, env, lambda: state["ports"], post_tokens,
                        f"/v1/tenants/{rl_client['id']}/access", rl_token)

            # kill B while four distinct runners hold leases: A has two and
            # the worker one, so at least one of them is B's
            self.assertTrue(wait_until(lambda: len(mock.requests) > 100, 60, 0.1), "the load is under way")

            def four_owners():
                return len({o for o, d in leases(env).values()}) >= 4
            self.assertTrue(wait_until(four_owners, 60, 0.05), "all three processes run steps")
            b.proc.send_signal(signal.SIGKILL)
            b.proc.wait(10)
            t_kill = time.time()
            state["ports"] = [a.port]
            at_kill = leases(env)
            print(f"# killed B holding some of {len(at_kill)} leased runs; "
                  f"{len(load.events)} events accepted, {len(mock.requests)} peer calls so far")

            # The survivors renew theirs (every LEASE_MS / 3); B's rows keep
            # their due time until it passes.  An owner none of whose rows was
            # renewed, released or taken within 3 s is B's.
            live = set()
            t_end = time.time() + 3.0
            while time.time() < t_end:
                now = leases(env)
                live |= {o for rid, (o, d) in now.items() if at_kill.get(rid) != (o, d)}
                live |= {o for rid, (o, d) in at_kill.items() if now.get(rid) != (o, d)}
                time.sleep(0.1)
            dead = {o for o, _ in at_kill.values()} - live
            orphans = {rid for rid, (o, _) in at_kill.items() if o in dead}
            self.assertTrue(dead, "B held leases when it died")
            self.assertTrue(orphans)

            def taken_over():
                now = leases(env)
                return all(now.get(rid, ("gone",))[0] not in dead for rid in orphans)
            self.assertTrue(wait_until(taken_over, 90, 0.1), "B's runs went back to the queue and were claimed")
            t_taken = time.time()
            print(f"# {len(orphans)} runs leased by B's {len(dead)} runner(s) taken over "
                  f"{t_taken - t_kill:.1f} s after the kill (lease {LEASE_MS} ms)")

            # the load goes on through A alone, then B comes back
            time.sleep(4)
            b = Server(p.pg, config=p.config)
            p.servers[1] = b
            t_restart = time.time()
            state["ports"] = [a.port, b.port]
            n_at_restart = len(mock.requests)
            self.assertTrue(wait_until(lambda: len(mock.requests) > n_at_restart + 50, 60, 0.1),
                            "work goes on after B's restart")
            # and through one whole window with A and the restarted B
            while time.time() < (int(t_restart) // W + 2) * W + 0.5:
                time.sleep(0.2)
            load.stop()
            self.assertEqual(load.problems, [], "every request was answered as it should")
            events = dict(load.events)
            runs = {rid: n % 2 for n, rids in events.values() for rid in rids}
            self.assertTrue(all(len(rids) == 1 for _, rids in events.values()), "one run per event")
            print(f"# {len(events)} events accepted; {load.posts_moved} posts repeated on another process")

            # no run lost: every accepted event's run succeeds
            ok = wait_until(lambda: env.states() == {"succeeded": len(runs)}, 300, 0.5)
            self.assertTrue(ok, f"{env.states()} for {len(runs)} accepted runs")
            self.assertEqual(env.psql("SELECT count(*) FROM platform.run_queue"), "0")

            keys = peer_keys(mock)
            expected = {f"{rid}:{s}" for rid, parity in runs.items() for s in HTTP_STEPS[parity]}
            self.assertEqual(set(keys) - {None}, expected, "each http step reached the peer")
            self.assertTrue(all(len(paths) == 1 for paths in keys.values()), "one key, one step's call")
            for rid, parity in runs.items():
                for s in HTTP_STEPS[parity]:
                    self.assertEqual(keys[f"{rid}:{s}"], {f"/effect/{s}"})
            print(f"# {len(mock.requests)} peer calls for {len(expected)} distinct keys")

            per = succeeded_steps(env)
            self.assertTrue(all(c == 1 for c in per.values()), "no step succeeded twice in a timeline")
            got = {}
            for rid, step in per:
                got.setdefault(rid, set()).add(step)
            self.assertEqual(set(got), set(runs))
            bad = [rid for rid, parity in runs.items() if got[rid] != PATH_STEPS[parity]]
            self.assertEqual(bad, [], "every timeline holds its path's steps")

            # the rate limit held in every window, across the surviving processes
            windows = load.admitted()
            first, last = min(windows), max(windows)
            for w in sorted(windows):
                adm, total = windows[w]
                whole = first < w < last
                print(f"# window {w}: admitted {adm} of {total} (limit {LIMIT})"
                      f"{'' if whole else ', partly measured'}"
                      f"{', B killed' if w <= t_kill < w + W else ''}{', B restarted' if w <= t_restart < w + W else ''}")
                self.assertLessEqual(adm, LIMIT, f"window {w}: never more than the limit cluster-wide")
                if whole:
                    self.assertGreater(total, 2 * LIMIT, f"window {w} was hammered past its limit")
                    if not (w <= t_kill < w + W):
                        # a killed process takes its unused leased budget with it: only
                        # the windows it did not die in must admit nearly the limit
                        self.assertGreaterEqual(adm, 0.8 * LIMIT, f"window {w}: the budget was not starved")
        finally:
            if load is not None:
                load.stop()
            rcs = [worker.stop()] if worker is not None else []
            rcs += env.close()
            mock.close()
        self.assertEqual(rcs, [0, 0, 0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
