"""HTTP behaviour of the gateway over real loopback sockets: routing,
problem bodies, request ids, trace context, keep-alive and pipelining."""
import json
import socket
import unittest

from mfharness import TESTSRV, Server, parse_responses, raw, request

PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "request_id"}


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.srv = Server(binary=TESTSRV, config={"workers": 2})
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        cls.assert_rc = cls.srv.stop()

    def assertProblem(self, r, status, code):
        self.assertEqual(r.status, status, r.body)
        self.assertEqual(r.headers["content-type"], "application/problem+json")
        p = r.json()
        self.assertTrue(PROBLEM_FIELDS <= set(p), p)
        self.assertEqual(p["status"], status)
        self.assertEqual(p["code"], code)
        self.assertEqual(p["request_id"], r.headers["x-request-id"])
        return p

    def test_path_parameters_and_precedence(self):
        r = request(self.port, "GET", "/items/42")
        self.assertEqual(r.json(), {"id": "42", "route": "/items/{id}", "part": None, "method": "GET"})
        r = request(self.port, "GET", "/items/new")
        self.assertEqual(r.json()["route"], "/items/new", "a literal segment beats a parameter")
        r = request(self.port, "GET", "/items/a%20b/parts/p1")
        self.assertEqual(r.json()["id"], "a b", "parameters are percent-decoded")
        self.assertEqual(r.json()["part"], "p1")

    def test_bad_percent_encoding_is_400(self):
        for path in ("/items/%zz", "/items/%00", "/items/a%2Fb"):
            self.assertProblem(request(self.port, "GET", path), 400, "invalid_path")

    def test_404_problem(self):
        r = request(self.port, "GET", "/no/such/thing")
        p = self.assertProblem(r, 404, "not_found")
        self.assertEqual(p["type"], "/problems/not_found")
        self.assertNotIn("mspflow", r.body.decode().lower() + str(r.headers).lower(),
                         "no product name in responses (white-label)")
        self.assertProblem(request(self.port, "GET", "/items/42/"), 404, "not_found")

    def test_405_lists_allowed_methods(self):
        r = request(self.port, "PUT", "/items/42")
        self.assertProblem(r, 405, "method_not_allowed")
        allow = {m.strip() for m in r.headers["allow"].split(",")}
        self.assertEqual(allow, {"GET", "HEAD", "DELETE"})
        r = request(self.port, "DELETE", "/items/42")
        self.assertEqual(r.status, 200)

    def test_head_has_headers_but_no_body(self):
        get = request(self.port, "GET", "/healthz")
        data = raw(self.port, b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertIn(b"200 OK", head)
        self.assertIn(f"Content-Length: {len(get.body)}".encode(), head)
        self.assertEqual(body, b"")

    def test_json_echo_and_415(self):
        r = request(self.port, "POST", "/echo", body={"a": [1, 2]})
        self.assertEqual(r.json(), {"received": {"a": [1, 2]}})
        r = request(self.port, "POST", "/echo", body=b'{"a":1}',
                    headers={"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(r.status, 200)
        self.assertProblem(request(self.port, "POST", "/echo", body=b'{"a":1}',
                                   headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
        self.assertProblem(request(self.port, "POST", "/echo", body=b'{"a":1}'), 415, "unsupported_media_type")

    def test_invalid_json_is_400(self):
        h = {"Content-Type": "application/json"}
        cases = [b'{"url": "ok", "url": "http://169.254.169.254"}', b'{"a": "\xc3\x28"}',
                 b'{"a": "\\u0000"}', b'{"a": ', b'"scalar"', b"{}{}"]
        for body in cases:
            p = self.assertProblem(request(self.port, "POST", "/echo", body=body, headers=h), 400, "invalid_json")
            self.assertNotIn("169.254", p["detail"], "the detail never echoes input")
        self.assertProblem(request(self.port, "POST", "/echo", body=b"", headers=h), 400, "body_required")

    def test_request_id_echoed_when_sane(self):
        r = request(self.port, "GET", "/healthz", headers={"X-Request-Id": "abc-123.X_y:z"})
        self.assertEqual(r.headers["x-request-id"], "abc-123.X_y:z")
        for bad in ("a" * 129, "has space", "semi;colon", ""):
            r = request(self.port, "GET", "/healthz", headers={"X-Request-Id": bad})
            self.assertNotEqual(r.headers["x-request-id"], bad)
            self.assertRegex(r.headers["x-request-id"], r"^[0-9a-f]{32}$")
        ids = {request(self.port, "GET", "/healthz").headers["x-request-id"] for _ in range(50)}
        self.assertEqual(len(ids), 50, "generated ids are unique")

    def test_traceparent_joins_the_access_log(self):
        def logged(rid):
            line = self.srv.wait_log(lambda o: o.get("module") == "access" and o.get("request_id") == rid, 5)
            self.assertIsNotNone(line, rid)
            self.assertRegex(line.get("trace_id", ""), r"^[0-9a-f]{32}$", line)
            return line["trace_id"]

        tid = "4bf92f3577b34da6a3ce929d0e0e4736"
        r = request(self.port, "GET", "/healthz",
                    headers={"X-Request-Id": "trace-ok", "traceparent": f"00-{tid}-00f067aa0ba902b7-01"})
        self.assertNotIn("traceparent", r.headers, "the trace is not echoed: X-Request-Id correlates responses")
        self.assertEqual(logged("trace-ok"), tid, "a valid traceparent's trace id is logged")
        r = request(self.port, "GET", "/healthz",
                    headers={"X-Request-Id": "trace-future", "traceparent": f"cc-{tid}-00f067aa0ba902b7-01-more"})
        self.assertEqual(logged("trace-future"), tid, "a later version is read forward-compatibly")
        bad = ["00-" + tid.upper() + "-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
               f"ff-{tid}-00f067aa0ba902b7-01", f"00-{tid}-00f067aa0ba902b7-01-extra", "garbage"]
        for i, tp in enumerate(bad):
            request(self.port, "GET", "/healthz", headers={"X-Request-Id": f"trace-bad-{i}", "traceparent": tp})
        fresh = [logged(f"trace-bad-{i}") for i in range(len(bad))]
        self.assertNotIn(tid, fresh, "an invalid traceparent is replaced by a new trace")
        self.assertNotIn("0" * 32, fresh)
        raw(self.port, (f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: trace-two\r\n"
                        f"traceparent: 00-{tid}-00f067aa0ba902b7-01\r\n"
                        f"traceparent: 00-{tid}-00f067aa0ba902b7-01\r\nConnection: close\r\n\r\n").encode())
        self.assertNotEqual(logged("trace-two"), tid, "two traceparent fields start a new trace")
        for i in range(3):
            request(self.port, "GET", "/healthz", headers={"X-Request-Id": f"trace-none-{i}"})
        started = [logged(f"trace-none-{i}") for i in range(3)]
        self.assertEqual(len(set(started + fresh)), len(started) + len(fresh), "started traces are distinct")

    def test_handler_sees_the_trace_the_log_records(self):
        tid, caller = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
        r = request(self.port, "GET", "/trace",
                    headers={"X-Request-Id": "trace-h1", "traceparent": f"00-{tid}-{caller}-01"})
        version, t, span, flags = r.json()["traceparent"].split("-")
        self.assertEqual((version, t, flags), ("00", tid, "01"), "same trace, same flags")
        self.assertRegex(span, r"^[0-9a-f]{16}$")
        self.assertNotEqual(span, caller, "the request is a new span, child of the caller's")
        r = request(self.port, "GET", "/trace", headers={"X-Request-Id": "trace-h2"})
        _, started, _, flags = r.json()["traceparent"].split("-")
        self.assertEqual(flags, "00", "a trace started here is not marked sampled")
        line = self.srv.wait_log(lambda o: o.get("module") == "access" and o.get("request_id") == "trace-h2", 5)
        self.assertEqual(line["trace_id"], started, "the access log records the trace the handler saw")

    def test_no_server_header(self):
        r = request(self.port, "GET", "/healthz")
        self.assertNotIn("server", r.headers)
        self.assertIn("date", r.headers)

    def test_keep_alive_many_requests_one_connection(self):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        f = s.makefile("rb")
        for i in range(1000):
            s.sendall(f"GET /items/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            status = f.readline()
            self.assertIn(b"200", status)
            n = 0
            while True:
                line = f.readline()
                if line == b"\r\n":
                    break
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            self.assertEqual(json.loads(f.read(n))["id"], str(i))
        s.close()

    def test_pipelined_requests_answered_in_order(self):
        reqs = b"".join(f"GET /items/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(49))
        reqs += b"GET /items/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        out = parse_responses(raw(self.port, reqs))
        self.assertEqual(len(out), 50)
        ids = [json.loads(body)["id"] for _, _, body in out]
        self.assertEqual(ids, [str(i) for i in range(49)] + ["last"])

    def test_pipelined_async_and_sync_keep_order(self):
        reqs = (b"GET /sleep?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /items/after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        out = parse_responses(raw(self.port, reqs))
        self.assertEqual([s for s, _, _ in out], [200, 200])
        self.assertEqual(json.loads(out[0][2]), {"slept": True})
        self.assertEqual(json.loads(out[1][2])["id"], "after")

    def test_http10_closes_unless_keep_alive(self):
        data = raw(self.port, b"GET /healthz HTTP/1.0\r\n\r\n")
        self.assertIn(b"Connection: close", data)
        self.assertEqual(len(parse_responses(data)), 1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
