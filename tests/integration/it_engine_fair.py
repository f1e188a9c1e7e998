"""Fairness (CONTRACT 6): tenant A has 20,000 runs queued behind slow
calls; tenant B's new runs still start within a second each, while A
never holds more runs at once than its concurrent-run limit."""
import time
import unittest
import uuid

from mfengine import EngineEnv
from mfidentity import wait_until
from mfmock import MockServer, Reply

BACKLOG = 20000


class EngineFairnessTest(unittest.TestCase):
    def test_noisy_neighbour(self):
        mock = MockServer({"/slow": lambda rec: Reply(200, {"ok": True}, delay=0.5)})
        env = EngineEnv()
        try:
            noisy = env.p.create_client(env.msp["id"], "eng-noisy")
            a = noisy["id"]
            env.connector("slow", f"http://localhost:{mock.port}", tid=a)
            va = env.install("slow", {"trigger": {"event": "test.slow"}, "steps": [
                {"id": "call", "type": "http", "connector": "slow", "method": "POST", "path": "/slow",
                 "timeout": "PT10S"}]}, tid=a)
            vb = env.install("quick", {"trigger": {"event": "test.quick"}, "steps": [
                {"id": "t", "type": "transform", "output": {"x": "1 + 1"}}]})
            env.start_many(BACKLOG, "slow", va, "call", tid=a)
            self.assertTrue(wait_until(lambda: len(mock.requests) >= 20, 20), "A's runs are being worked")

            lat = []
            for _ in range(5):
                rid = str(uuid.uuid4())
                env.start_runs([rid], "quick", vb, "t")
                self.assertTrue(wait_until(lambda: env.psql(
                    f"SELECT state FROM {env.schema}.runs WHERE id = '{rid}'") == "succeeded", 10))
                lat.append(float(env.psql(
                    f"SELECT extract(epoch FROM s.started_at - r.created_at) FROM {env.schema}.runs r "
                    f"JOIN {env.schema}.run_steps s ON s.run_id = r.id AND s.seq = 1 WHERE r.id = '{rid}'")))
                time.sleep(0.3)
            print(f"# B's event-to-first-step: {', '.join(f'{x * 1000:.0f} ms' for x in lat)}")
            self.assertLess(max(lat), 1.0, "B's new run started within a second")

            sa = env.tenant_schema(a)
            waiting = int(env.psql(f"SELECT count(*) FROM {sa}.runs WHERE state NOT IN ('succeeded', 'failed')"))
            self.assertGreater(waiting, BACKLOG - 2000, "A's backlog was still there")
            leased = int(env.psql(f"SELECT count(*) FROM platform.run_queue WHERE tenant_id = '{a}' "
                                  "AND owner IS NOT NULL AND due_at > now()"))
            self.assertLessEqual(leased, 20, "A holds no more than its concurrent-run limit")
        finally:
            rcs = env.close()
            mock.close()
        self.assertEqual(rcs, [0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
