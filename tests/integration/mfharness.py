"""Integration test harness: a real PostgreSQL in a temporary folder, the
real mspflow binary (or the test server) on port 0, and HTTP helpers.

Stdlib only.  When the tests run as root, PostgreSQL runs as `nobody`
(it refuses root).  Every process a test starts is stopped at exit, even
when the test fails; MSPFLOW_TEST_KEEP=1 keeps the temporary folders.
"""
import atexit
import glob
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("MSPFLOW_BIN", "build/mspflow")
TESTSRV = os.environ.get("MSPFLOW_TESTSRV", "build/tests/mspflow-testsrv")
_procs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_cleanup)


def _bindir():
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        if os.path.exists(os.path.join(d, "postgres")):
            return d
    except FileNotFoundError:
        pass
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4]))
    if not cands:
        raise RuntimeError("no PostgreSQL server binaries: install postgresql")
    return os.path.dirname(cands[-1])


def _tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("MSPFLOW_TEST_TMP"))
    os.chmod(d, 0o755)
    if os.environ.get("MSPFLOW_TEST_KEEP") != "1":
        atexit.register(shutil.rmtree, d, True)
    return d


class PgCluster:
    """A throwaway PostgreSQL: initdb'd in a temp dir, Unix socket only.
    Tests run it with fsync=off; durable=True keeps PostgreSQL's defaults
    (benchmarks that compare commit rates)."""

    def __init__(self, durable=False):
        self.durable = durable
        self.bindir = _bindir()
        self.dir = _tmpdir("mspflow-pg-")
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "run")
        self.port = 5432
        self.proc = None
        self.as_root = os.geteuid() == 0
        os.mkdir(self.sock)
        if self.as_root:
            import pwd
            pw = pwd.getpwnam("nobody")
            self.uid, self.gid = pw.pw_uid, pw.pw_gid
            os.chown(self.dir, self.uid, self.gid)
            os.chown(self.sock, self.uid, self.gid)
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", "mspflow", "-A", "trust",
                   "-E", "UTF8", "--no-sync", "--locale=C"])
        self.start()
        self.psql("CREATE DATABASE mspflow", db="postgres")
        self.conninfo = f"host={self.sock} port={self.port} dbname=mspflow user=mspflow"

    def _demote(self):
        if self.as_root:
            os.setgid(self.gid)
            os.setuid(self.uid)

    def _run(self, argv):
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       preexec_fn=self._demote)

    def start(self, timeout=30):
        log = open(os.path.join(self.dir, "pg.log"), "ab")
        self.proc = subprocess.Popen(
            [os.path.join(self.bindir, "postgres"), "-D", self.data, "-k", self.sock, "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=" + ("on" if self.durable else "off"),
             "-c", "max_connections=200"],
            stdout=log, stderr=log, preexec_fn=self._demote)
        _procs.append(self.proc)
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = subprocess.run([os.path.join(self.bindir, "pg_isready"), "-q", "-h", self.sock, "-p",
                                str(self.port)])
            if r.returncode == 0:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("PostgreSQL did not start: " + open(os.path.join(self.dir, "pg.log")).read()[-2000:])

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            self.proc.wait(30)

    def psql(self, sql, db="mspflow"):
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At",
                            "-h", self.sock, "-p", str(self.port), "-U", "mspflow", "-d", db, "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql failed: {r.stderr}")
        return r.stdout.strip()

    def cleanup(self):
        self.stop()


def write_config(path, values):
    with open(path, "w") as f:
        for k, v in values.items():
            if isinstance(v, bool):
                v = "true" if v else "false"
            f.write(f'{k} = "{v}"\n' if isinstance(v, str) else f"{k} = {v}\n")


def run_migrate(pg, binary=None, timeout=120):
    d = _tmpdir("mspflow-cfg-")
    cfg = os.path.join(d, "migrate.conf")
    write_config(cfg, {"database_url": pg.conninfo})
    return subprocess.run([binary or BIN, "migrate", "--config", cfg], capture_output=True, text=True,
                          timeout=timeout)


class Server:
    """mspflow serve (or the test server) on 127.0.0.1:0, its JSON log captured."""

    def __init__(self, pg=None, config=None, binary=None, args=None, wait=True):
        self.dir = _tmpdir("mspflow-srv-")
        self.config_path = os.path.join(self.dir, "mspflow.conf")
        cfg = {"listen": "127.0.0.1:0", "admin_listen": "127.0.0.1:0", "workers": 2,
               "shutdown_grace_ms": 10000}
        if pg is not None:
            cfg["database_url"] = pg.conninfo
        cfg.update(config or {})
        write_config(self.config_path, cfg)
        argv = [binary or BIN] + (args or ["serve", "--config", self.config_path])
        self.lines, self.raw = [], []
        self.port = self.admin_port = None   # before the readers start: they set them
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        _procs.append(self.proc)
        threading.Thread(target=self._reader, args=(self.proc.stderr,), daemon=True).start()
        threading.Thread(target=self._reader, args=(self.proc.stdout,), daemon=True).start()
        if wait:
            self.wait_listening()

    def _reader(self, stream):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.raw.append(line)
                try:
                    obj = json.loads(line)
                    self.lines.append(obj)
                    if obj.get("msg") == "listening":
                        if obj["listener"] == "api":
                            self.port = obj["port"]
                        else:
                            self.admin_port = obj["port"]
                except ValueError:
                    pass
                self._cv.notify_all()

    def wait_listening(self, timeout=60):
        deadline = time.time() + timeout
        with self._cv:
            while self.port is None or self.admin_port is None:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("server did not start:\n" + "\n".join(self.raw[-40:]))
                self._cv.wait(0.1)

    def logs(self):
        with self._cv:
            return list(self.lines)

    def output(self):
        with self._cv:
            return "\n".join(self.raw)

    def wait_log(self, pred, timeout=10):
        deadline = time.time() + timeout
        with self._cv:
            while True:
                for obj in self.lines:
                    if pred(obj):
                        return obj
                if time.time() > deadline:
                    return None
                self._cv.wait(0.1)

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        time.sleep(0.1)  # let the reader threads drain the pipes
        if self.proc.returncode != 0:
            print(f"# exit status {self.proc.returncode}; last output:\n" + "\n".join(self.raw[-60:]))
        return self.proc.returncode


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(port, method, path, body=None, headers=None, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = dict(headers or {})
            headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def raw(port, data, read_timeout=5, until_close=True):
    """Sends bytes as they are and returns everything read until the server
    closes (or read_timeout passes without data)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if not until_close and b"\r\n\r\n" in out:
                break
        return out
    finally:
        s.close()


def parse_responses(data):
    """Splits a byte stream into [(status, headers, body)] using Content-Length."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            break
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            headers[k.strip().lower()] = v.strip()
        n = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:n]))
        data = rest[n:]
    return out


def wait_all_ok(port, path, timeout, run=8):
    """True once `run` consecutive requests answer 200 (before timeout);
    requests on fresh connections spread over the worker threads."""
    deadline = time.time() + timeout
    ok = 0
    while time.time() < deadline:
        ok = ok + 1 if request(port, "GET", path).status == 200 else 0
        if ok >= run:
            return True
        if ok == 0:
            time.sleep(0.1)
    return False
