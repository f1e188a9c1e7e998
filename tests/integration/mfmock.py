"""A small mock of an external system (a CRM, a PSA, an OAuth2 token
endpoint) that tests start in-process on 127.0.0.1:0.  Routes are Python
functions; every request is recorded with its arrival time so a test can
check what the connector layer really sent, and when."""
import http.server
import json
import threading
import time


class Recorded:
    def __init__(self, method, path, headers, body, at):
        self.method, self.path, self.headers, self.body, self.at = method, path, headers, body, at

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


class Reply:
    def __init__(self, status=200, body=b"", headers=None, delay=0.0, chunks=None):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        self.status, self.body, self.headers, self.delay, self.chunks = status, body, headers or {}, delay, chunks


class MockServer:
    """routes: {path_prefix: fn(Recorded) -> Reply}; the longest matching
    prefix wins."""

    def __init__(self, routes, host="127.0.0.1"):
        self.routes = dict(routes)
        self.requests = []
        self.lock = threading.Lock()
        mock = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _handle(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Recorded(self.command, self.path, list(self.headers.items()), body, time.monotonic())
                with mock.lock:
                    mock.requests.append(rec)
                fn = None
                best = -1
                for prefix, f in mock.routes.items():
                    if self.path.startswith(prefix) and len(prefix) > best:
                        fn, best = f, len(prefix)
                reply = fn(rec) if fn else Reply(404, {"error": "no route"})
                if reply.delay:
                    time.sleep(reply.delay)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    if reply.chunks is not None:
                        self.send_header("Transfer-Encoding", "chunked")
                        self.end_headers()
                        for c in reply.chunks:
                            self.wfile.write(b"%x\r\n%s\r\n" % (len(c), c))
                        self.wfile.write(b"0\r\n\r\n")
                    else:
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        if self.command != "HEAD":
                            self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request, client_address):
                pass  # a client that hangs up (a timed-out call) is not news

        self.httpd = Server((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def seen(self, prefix=""):
        with self.lock:
            return [r for r in self.requests if r.path.startswith(prefix)]

    def clear(self):
        with self.lock:
            self.requests.clear()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
