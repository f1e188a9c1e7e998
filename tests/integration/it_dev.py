"""`mspflow dev`: the embedded PostgreSQL starts, serves (the shipped
templates seeded into the catalog once), stops with mspflow - also when
mspflow is SIGKILLed - and recovers a stale cluster."""
import os
import signal
import subprocess
import tempfile
import time
import unittest

from mfharness import BIN, Server, request, _tmpdir
from mfidentity import wait_until


def postmasters(datadir_part):
    """pids of postgres processes whose command line names the data dir."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if "postgres" in cmd and " -D " in cmd and datadir_part in cmd:
            out.append(int(pid))
    return out


def data_dir(state):
    return os.path.realpath(os.path.join(state, "pg", "data"))


def wait_ready(port, timeout):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if request(port, "GET", "/readyz", timeout=2).status == 200:
                return time.time() - t0
        except OSError:
            pass
        time.sleep(0.05)
    return None


def wait_gone(state, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not postmasters(data_dir(state)):
            return True
        time.sleep(0.1)
    return False


class DevTest(unittest.TestCase):
    def start(self, state):
        t0 = time.time()
        srv = Server(binary=BIN, args=["dev", "--state", state, "--listen", "127.0.0.1:0",
                                       "--admin-listen", "127.0.0.1:0"])
        ready = wait_ready(srv.port, 30)
        self.assertIsNotNone(ready, srv.output())
        return srv, time.time() - t0

    def test_lifecycle(self):
        state = os.path.join(_tmpdir("mspflow-dev-"), "state")
        srv, first = self.start(state)
        print(f"# first start: /readyz 200 after {first:.2f}s")
        self.assertLess(first, 30)
        self.assertTrue(postmasters(data_dir(state)))
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10), "postgres stopped with mspflow")

        srv, second = self.start(state)
        print(f"# second start: /readyz 200 after {second:.2f}s")
        self.assertLess(second, 5)

        # SIGKILL: the guardian must stop postgres anyway
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait()
        self.assertTrue(wait_gone(state, 15), "no orphaned postmaster after SIGKILL")
        srv, _ = self.start(state)
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10))

    def test_credentials_json(self):
        """dev bootstraps a platform admin, writes STATE/credentials.json (0600)
        and prints the same; the credentials work, and survive a restart."""
        import json
        import stat
        from mfidentity import api, token_for
        state = os.path.join(_tmpdir("mspflow-dev-"), "state")
        srv, _ = self.start(state)
        path = os.path.join(state, "credentials.json")
        # written once the port is known, which /readyz may beat by a hair
        self.assertTrue(wait_until(lambda: os.path.exists(path), 10))
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(state, "master.key")).st_mode), 0o600)
        with open(path) as f:
            creds = json.load(f)
        self.assertEqual(set(creds), {"base_url", "client_id", "client_secret"})
        self.assertEqual(creds["base_url"], f"http://127.0.0.1:{srv.port}")
        # the file is written before the line is printed: wait for the reader
        printed = []
        deadline = time.time() + 10
        while not printed and time.time() < deadline:
            printed = [l for l in srv.output().splitlines() if l.startswith("{") and "client_secret" in l]
            if not printed:
                time.sleep(0.05)
        self.assertEqual([json.loads(l) for l in printed], [creds])
        tok = token_for(srv.port, creds["client_id"], creds["client_secret"])
        r = api(srv.port, "POST", "/v1/tenants", tok, {"kind": "msp", "name": "Dev MSP", "slug": "dev-msp"})
        self.assertEqual(r.status, 201, r.body)
        # the shipped templates are in the catalog, published at start
        shipped = ["demo-partner/billing-readiness", "demo-partner/change-request-routing",
                   "demo-partner/client-onboarding", "demo-partner/opportunity-to-project"]
        r = api(srv.port, "GET", "/v1/catalog/templates", tok)
        self.assertEqual(r.status, 200, r.body)
        tdir = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "catalog", "templates")
        want = []
        for t in shipped:
            with open(os.path.join(tdir, t.split("/")[1] + ".json")) as f:
                want.append((t, json.load(f)["version"]))
        self.assertEqual([(i["id"], i["latest_version"]) for i in r.json()["items"]], want)
        self.assertEqual(len([l for l in srv.logs() if l.get("msg") == "template published"]), 4)
        # the secret is shown to the operator, never logged
        self.assertFalse(any(creds["client_secret"] in l for l in srv.raw if l not in printed))
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10))
        srv, _ = self.start(state)
        # the file is replaced (renamed over) before the line is printed
        self.assertTrue(wait_until(lambda: any(l.startswith("{") and "client_secret" in l
                                               for l in srv.output().splitlines()), 10))
        again = json.load(open(path))
        self.assertEqual(again["client_id"], creds["client_id"])      # still valid: reused
        self.assertEqual(again["base_url"], f"http://127.0.0.1:{srv.port}")
        tok = token_for(srv.port, again["client_id"], again["client_secret"])
        # a restart seeds nothing new
        r = api(srv.port, "GET", "/v1/catalog/templates", tok)
        self.assertEqual([i["id"] for i in r.json()["items"]], shipped)
        self.assertFalse([l for l in srv.logs() if l.get("msg") in ("template published", "demo partner created")])
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10))

    def test_stale_postmaster_is_recovered(self):
        state = os.path.join(_tmpdir("mspflow-dev-"), "state")
        srv, _ = self.start(state)
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10))
        # a postmaster for this data dir started outside mspflow, as if orphaned
        data = data_dir(state)
        sock = os.path.join(os.path.dirname(data), "run")
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True).stdout.strip()
        st = os.stat(data)

        def demote():
            if os.geteuid() == 0:
                os.setgid(st.st_gid)
                os.setuid(st.st_uid)
        stale = subprocess.Popen([os.path.join(bindir, "postgres"), "-D", data, "-k", sock,
                                  "-c", "listen_addresses="], preexec_fn=demote,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(1.5)
            self.assertIsNone(stale.poll())
            srv, _ = self.start(state)
            self.assertIsNotNone(stale.poll(), "the stale postmaster was stopped")
            self.assertEqual(srv.stop(), 0)
        finally:
            if stale.poll() is None:
                stale.kill()
            stale.wait()

    def test_half_initialised_cluster_and_long_path(self):
        # a path too long for a Unix socket under the state folder, and a
        # data folder left behind by an interrupted initdb (no PG_VERSION)
        state = os.path.join(_tmpdir("mspflow-dev-"), "s" * 60, "t" * 40, "state")
        os.makedirs(os.path.join(state, "pg", "data"), mode=0o700)
        with open(os.path.join(state, "pg", "data", "junk"), "w") as f:
            f.write("left by an interrupted initdb")
        srv, _ = self.start(state)
        self.assertTrue(os.path.exists(os.path.join(data_dir(state), "PG_VERSION")))
        self.assertFalse(os.path.exists(os.path.join(data_dir(state), "junk")))
        ready = srv.wait_log(lambda o: o.get("msg") == "embedded PostgreSQL ready", 1)
        self.assertTrue(ready["socket_dir"].startswith("/tmp/mspflow-"), ready)
        self.assertEqual(srv.stop(), 0)
        self.assertTrue(wait_gone(state, 10))

    @unittest.skipUnless(os.geteuid() == 0, "only root drops to an unprivileged user")
    def test_state_under_a_private_folder(self):
        parent = tempfile.mkdtemp(prefix="mspflow-private-")
        os.chmod(parent, 0o700)   # like /root: nobody cannot traverse it
        state = os.path.join(parent, "state")
        link = os.path.join(state, "pg")
        try:
            srv, _ = self.start(state)
            # the cluster moved where the server user can reach it, and said so
            self.assertTrue(os.path.islink(link))
            self.assertTrue(os.readlink(link).startswith("/var/tmp/mspflow-dev-"), os.readlink(link))
            self.assertTrue(any("cluster" in l and l.get("cluster") == os.readlink(link)
                                for l in srv.logs()), srv.output())
            self.assertEqual(srv.stop(), 0)
            self.assertTrue(wait_gone(state, 10))
        finally:
            target = os.readlink(link) if os.path.islink(link) else None
            subprocess.run(["rm", "-rf", parent])
            if target:   # the /var/tmp/mspflow-dev-<hash> folder holding it
                subprocess.run(["rm", "-rf", os.path.dirname(target)])


if __name__ == "__main__":
    unittest.main(verbosity=2)
