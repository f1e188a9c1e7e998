"""Gateways and workers scale apart (CONTRACT 6): `mspflow serve` with
engine_enabled = 0 answers the routes but runs nothing; two `mspflow
worker` processes on the same database run the work between them, and
answer only the operations endpoints."""
import os
import re
import time
import unittest

from mfengine import EngineEnv
from mfharness import Server, request, write_config
from mfidentity import wait_until


def claimed(port):
    r = request(port, "GET", "/metrics")
    m = re.search(rb"^mspflow_engine_claimed_runs_total (\d+)$", r.body, re.M)
    return int(m.group(1)) if m else 0


class EngineWorkerTest(unittest.TestCase):
    def test_gateway_and_two_workers(self):
        env = EngineEnv(config={"engine_enabled": 0})
        workers = []
        try:
            r = env.call("PUT", "/workflows/three", {"trigger": {"event": "test.three"}, "steps": [
                {"id": f"s{i}", "type": "transform", "output": {"n": f"{i}"}} for i in range(3)]})
            self.assertEqual(r.status, 201, r.body)
            rid = env.call("POST", "/events", {"type": "test.three", "data": {}}).json()["run_ids"][0]
            time.sleep(1.5)
            self.assertEqual(env.states(), {"pending": 1}, "a gateway-only server runs nothing")

            for i in range(2):
                cfg = dict(env.p.config, engine_enabled=0)  # worker forces the engine on
                path = os.path.join(env.p.pg.dir, f"worker{i}.conf")
                write_config(path, dict(cfg, database_url=env.p.pg.conninfo, listen="127.0.0.1:0",
                                        admin_listen="127.0.0.1:0", workers=1))
                workers.append(Server(args=["worker", "--config", path]))
            self.assertTrue(wait_until(lambda: env.states() == {"succeeded": 1}, 10), env.states())

            env.start_many(3000, "three", 1, "s0")
            self.assertTrue(wait_until(lambda: env.states() == {"succeeded": 3001}, 60), env.states())
            counts = [claimed(w.admin_port) for w in workers]
            self.assertTrue(all(c > 0 for c in counts), f"both workers took runs: {counts}")
            self.assertEqual(claimed(env.p.servers[0].admin_port), 0, "the gateway claimed none")
            # a worker's listener serves operations, not the API
            w = workers[0]
            self.assertEqual(request(w.port, "GET", "/healthz").status, 200)
            self.assertEqual(request(w.port, "GET", f"/v1/tenants/{env.tid}/runs/{rid}").status, 404)
        finally:
            rcs = [w.stop() for w in workers]
            rcs += env.close()
        self.assertEqual(rcs, [0, 0, 0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
