"""Graceful shutdown: SIGTERM lets in-flight requests finish, refuses new
connections, closes idle keep-alive connections, exits 0."""
import socket
import threading
import time
import unittest

from mfharness import TESTSRV, Server, request


class ShutdownTest(unittest.TestCase):
    def test_sigterm_drains_in_flight_requests(self):
        srv = Server(binary=TESTSRV, config={"shutdown_grace_ms": 10000})
        port = srv.port
        idle = socket.create_connection(("127.0.0.1", port))
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", idle.recv(4096))
        result = {}

        def slow():
            result["r"] = request(port, "GET", "/sleep?ms=1500", timeout=10)

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.4)          # the slow request is in flight
        t0 = time.time()
        srv.proc.send_signal(15)
        time.sleep(0.3)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).sendall(b"x")
            request(port, "GET", "/healthz", timeout=2)
        idle.settimeout(3)
        self.assertEqual(idle.recv(4096), b"", "idle keep-alive connection closed at shutdown")
        t.join(10)
        self.assertEqual(result["r"].status, 200, "in-flight request completed")
        # The first SIGTERM is still in effect: wait for the exit rather than
        # signalling again (a second signal during exit would kill it).
        srv.proc.wait(15)
        rc = srv.stop()
        self.assertEqual(rc, 0)
        self.assertLess(time.time() - t0, 8)
        self.assertIsNotNone(srv.wait_log(lambda o: o.get("msg") == "stopped", 1))

    def test_grace_period_bounds_shutdown(self):
        srv = Server(binary=TESTSRV, config={"shutdown_grace_ms": 500})
        port = srv.port
        t = threading.Thread(target=lambda: self._ignore(port))
        t.start()
        time.sleep(0.3)
        t0 = time.time()
        rc = srv.stop(timeout=10)
        self.assertEqual(rc, 0)
        self.assertLess(time.time() - t0, 5, "a stuck request does not hold shutdown past the grace period")
        t.join(10)

    def _ignore(self, port):
        try:
            request(port, "GET", "/sleep?ms=20000", timeout=15)
        except Exception:
            pass


if __name__ == "__main__":
    unittest.main(verbosity=2)
