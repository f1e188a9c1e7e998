"""Limits and hostile clients: body and head sizes, JSON depth, request
smuggling shapes, slowloris, the connection cap."""
import socket
import threading
import time
import unittest

from mfharness import TESTSRV, Server, parse_responses, raw, request


def problem_code(data):
    import json
    out = parse_responses(data)
    return (out[0][0], json.loads(out[0][2])["code"]) if out else (None, None)


class LimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(binary=TESTSRV, config={
            "workers": 1, "max_body_bytes": 4096, "max_header_bytes": 2048,
            "header_timeout_ms": 1000, "body_timeout_ms": 1000, "max_connections": 20})
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def closed_after(self, data):
        """The server closed the connection (raw() read until EOF)."""
        return len(parse_responses(data)) == 1

    def test_declared_body_over_limit_is_413_and_closed(self):
        data = raw(self.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 5000\r\n\r\n")
        self.assertEqual(problem_code(data), (413, "payload_too_large"))
        self.assertIn(b"Connection: close", data)

    def test_chunked_body_growing_over_limit_is_413(self):
        chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"
        data = raw(self.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + chunk * 3 + b"0\r\n\r\n")
        self.assertEqual(problem_code(data), (413, "payload_too_large"))

    def test_chunked_body_within_limit_is_decoded(self):
        body = b'{"k": "v"}'
        data = raw(self.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                              b"4;ext=1\r\n" + body[:4] + b"\r\n6\r\n" + body[4:] + b"\r\n0\r\nX-T: 1\r\n\r\n")
        out = parse_responses(data)
        self.assertEqual(out[0][0], 200, data)
        self.assertIn(b'"k":"v"', out[0][2])

    def test_json_depth(self):
        ok = request(self.port, "POST", "/echo", body=b"[" * 64 + b"]" * 64,
                     headers={"Content-Type": "application/json"})
        self.assertEqual(ok.status, 200)
        deep = request(self.port, "POST", "/echo", body=b"[" * 65 + b"]" * 65,
                       headers={"Content-Type": "application/json"})
        self.assertEqual(deep.status, 400)
        self.assertEqual(deep.json()["code"], "json_too_deep")

    def test_head_over_limit_is_431(self):
        data = raw(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 3000 + b"\r\n\r\n")
        self.assertEqual(problem_code(data), (431, "header_too_large"))

    def test_smuggling_shapes_are_400_and_closed(self):
        shapes = {
            "CL+TE": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "TE+CL": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            "two CLs": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            "equal CLs": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd",
            "CL list": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd",
            "CL sign": b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
            "TE gzip": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            "TE space": b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            "obs-fold": b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
            "bare LF": b"GET /healthz HTTP/1.1\nHost: x\n\n",
            "absolute-form": b"GET http://evil/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "no host": b"GET /healthz HTTP/1.1\r\n\r\n",
        }
        for bad_size in (b"zz", b"-1", b"0x10", b"1 ", b"ffffffffffffffffff", b""):
            shapes[f"chunk size {bad_size!r}"] = (
                b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + bad_size + b"\r\nabc\r\n0\r\n\r\n")
        for name, req in shapes.items():
            with self.subTest(shape=name):
                data = raw(self.port, req + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, _ = problem_code(data)
                self.assertIn(status, (400, 413), data)
                self.assertTrue(self.closed_after(data), "connection closed, the smuggled request unanswered")

    def test_unsupported_version_is_505(self):
        data = raw(self.port, b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n")
        self.assertEqual(problem_code(data), (505, "http_version_not_supported"))

    def test_slowloris_times_out_without_blocking_others(self):
        # one worker: the slow client and the normal one share its loop
        s = socket.create_connection(("127.0.0.1", self.port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.time()
        for _ in range(5):
            self.assertEqual(request(self.port, "GET", "/healthz", timeout=2).status, 200)
            s.sendall(b"X-Slow: 1\r\n")
            time.sleep(0.1)
        s.settimeout(5)
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        elapsed = time.time() - t0
        s.close()
        self.assertEqual(problem_code(data), (408, "request_timeout"))
        self.assertLess(elapsed, 4, "cut off near header_timeout_ms, not at a later default")

    def test_slow_body_times_out(self):
        data = raw(self.port, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                              b"Content-Length: 100\r\n\r\n{", read_timeout=5)
        self.assertEqual(problem_code(data), (408, "request_timeout"))

    def test_connection_cap(self):
        held = [socket.create_connection(("127.0.0.1", self.port)) for _ in range(20)]
        try:
            time.sleep(0.3)
            data = raw(self.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", read_timeout=3)
            self.assertEqual(problem_code(data), (503, "over_capacity"))
        finally:
            for s in held:
                s.close()
        time.sleep(0.3)
        self.assertEqual(request(self.port, "GET", "/healthz").status, 200, "capacity comes back")


if __name__ == "__main__":
    unittest.main(verbosity=2)
