"""Crash safety (CONTRACT 6): 500 runs of a five-step http workflow while
the server is killed with SIGKILL at random moments and restarted, six
times.  Every run ends succeeded, every step's call reached the peer (one
distinct Idempotency-Key per (run, step): the effects a well-behaved peer
applies once), and no run's timeline lost or doubled a step."""
import random
import signal
import time
import unittest
import uuid

from mfengine import EngineEnv, peer_keys, succeeded_steps
from mfharness import Server
from mfidentity import wait_until
from mfmock import MockServer, Reply

RUNS = 500
STEPS = 5
KILLS = 6


class EngineCrashTest(unittest.TestCase):
    def test_sigkill_loses_nothing(self):
        rnd = random.Random()
        seed = rnd.randrange(1 << 30)
        rnd.seed(seed)
        print(f"# seed {seed}")
        mock = MockServer({"/effect": lambda rec: Reply(200, {"ok": True}, delay=rnd.uniform(0.05, 0.25))})
        env = EngineEnv()
        try:
            env.connector("peer", f"http://localhost:{mock.port}")
            steps = [{"id": f"s{i}", "type": "http", "connector": "peer", "method": "POST",
                      "path": f"/effect/{i}", "body": {"run": "{{ input.n }}", "step": i},
                      "output": {"ok": "response.body.ok"},
                      "retry": {"max_attempts": 20, "backoff": "PT1S", "max_backoff": "PT2S"},
                      "timeout": "PT5S"} for i in range(1, STEPS + 1)]
            v = env.install("crash5", {"trigger": {"event": "test.crash"}, "steps": steps})
            ids = [str(uuid.uuid4()) for _ in range(RUNS)]
            env.start_runs(ids, "crash5", v, "s1")

            srv = env.p.servers[0]
            for k in range(KILLS):
                # a kill once the (re)started server is at work: every kill
                # falls while calls are in flight and runs are unfinished
                seen = len(mock.requests)
                self.assertTrue(wait_until(lambda: len(mock.requests) > seen + 20, 30, 0.02),
                                f"the server works after restart {k}")
                time.sleep(rnd.uniform(0, 1.0))
                srv.proc.send_signal(signal.SIGKILL)
                srv.proc.wait(10)
                self.assertLess(env.states().get("succeeded", 0), RUNS, f"kill {k + 1} fell before the end")
                srv = Server(env.p.pg, config=env.p.config)
                env.p.servers[0] = srv
                env.port = srv.port

            deadline = time.time() + 240
            while time.time() < deadline and env.states().get("succeeded", 0) < RUNS:
                time.sleep(0.5)
            self.assertEqual(env.states(), {"succeeded": RUNS})

            keys = peer_keys(mock)
            expected = {f"{r}:s{i}" for r in ids for i in range(1, STEPS + 1)}
            self.assertEqual(set(keys) - {None}, expected, "every (run, step) reached the peer")
            self.assertTrue(all(len(p) == 1 for p in keys.values()), "one key names one step's call")
            print(f"# {len(mock.requests)} calls for {len(expected)} distinct keys")

            # each run's timeline: its five steps succeeded, once each
            per = succeeded_steps(env)
            self.assertEqual(len(per), RUNS * STEPS)
            self.assertTrue(all(c == 1 for c in per.values()))
            self.assertEqual(env.psql("SELECT count(*) FROM platform.run_queue"), "0")
        finally:
            rcs = env.close()
            mock.close()
        self.assertEqual(rcs, [0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
