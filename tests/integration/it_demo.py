"""`mspflow dev --demo` (CONTRACT 9, docs/demo.md): the printed demo works
as the walkthrough says.  Contoso's approver signs in on the portal by
domain (Host: contoso.localhost) and by path, sees the won deal's finance
approval, approves it, and the run creates the project in the mock PSA and
links it on the mock CRM deal (the peers' GET /calls); the client user sees
no approval, the msp admin cannot use the client portal.  A second start
on the same state makes nothing twice: same tenants, users, passwords,
installations, and one run for the deal; a third without demo.json makes
the users again with new passwords and still one run."""
import json
import os
import stat
import subprocess
import time
import unittest

from mfharness import BIN, Server, request, _tmpdir
from mfidentity import api, token_for, wait_until

DOMAIN = "contoso.localhost"


def start(state):
    srv = Server(binary=BIN, args=["dev", "--demo", "--state", state, "--listen", "127.0.0.1:0",
                                   "--admin-listen", "127.0.0.1:0"])
    found = []

    def printed():
        found[:] = [json.loads(l)["demo"] for l in srv.output().splitlines() if l.startswith('{"demo":')]
        return bool(found)

    assert wait_until(printed, 60), srv.output()[-4000:]
    return srv, found[0]


def peers(demo, path):
    port = int(demo["peers_url"].rsplit(":", 1)[1])
    return request(port, "GET", path)


class DemoTest(unittest.TestCase):
    def setUp(self):
        self.state = os.path.join(_tmpdir("mspflow-demo-"), "state")
        self.srv, self.demo = start(self.state)

    def tearDown(self):
        if self.srv:
            self.assertEqual(self.srv.stop(), 0)

    # ---- helpers ----

    def portal(self, method, path, token=None, body=None, host=True, port=None):
        """A portal call by domain (Host header) or by path form."""
        port = port or self.srv.port
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if host:
            headers["Host"] = f"{DOMAIN}:{port}"
            return request(port, method, "/portal/v1" + path, body, headers)
        return request(port, method, "/portal/v1/c/contoso" + path, body, headers)

    def login(self, who, host=True, port=None, demo=None):
        u = (demo or self.demo)["logins"][who]
        return self.portal("POST", "/login", body={"email": u["email"], "password": u["password"]}, host=host,
                           port=port)

    def admin(self):
        with open(os.path.join(self.state, "credentials.json")) as f:
            c = json.load(f)
        return token_for(self.srv.port, c["client_id"], c["client_secret"])

    def run_of(self, tok, rid):
        r = api(self.srv.port, "GET", f"/v1/tenants/{self.demo['client']['id']}/runs/{rid}", tok)
        self.assertEqual(r.status, 200, r.body)
        return r.json()

    # ---- the test ----

    def test_walkthrough_and_restart(self):
        d, port = self.demo, self.srv.port
        # what was printed is what demo.json holds (0600)
        path = os.path.join(self.state, "demo.json")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path) as f:
            self.assertEqual(json.load(f), d)
        self.assertEqual(d["portal_url"], f"http://{DOMAIN}:{port}/portal/")
        self.assertEqual(d["portal_path_url"], f"http://127.0.0.1:{port}/portal/c/contoso/")
        self.assertEqual(d["portal_api"], f"http://{DOMAIN}:{port}/portal/v1")
        self.assertEqual(d["deal"]["state"], "waiting", d)
        # the credentials line of plain `dev` is still printed
        self.assertTrue([l for l in self.srv.output().splitlines() if l.startswith("{") and "client_secret" in l])
        # no password reaches the log (stdout's demo line is not the log)
        log = "\n".join(json.dumps(l) for l in self.srv.logs() if "level" in l)
        for u in d["logins"].values():
            self.assertNotIn(u["password"], log)

        # the printed portal URLs serve the portal page, by domain and by path
        r = request(port, "GET", "/portal/", headers={"Host": f"{DOMAIN}:{port}"})
        self.assertEqual((r.status, r.headers.get("content-type", "").split(";")[0]), (200, "text/html"), r.body)
        self.assertEqual(request(port, "GET", "/portal/c/contoso/").status, 200)
        # the brand, then the approver's sign-in by domain and by path
        r = self.portal("GET", "/branding")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json()["display_name"], "Northwind IT")
        r = self.login("client_approver")
        self.assertEqual(r.status, 200, r.body)
        tok = r.json()["access_token"]
        r = self.login("client_approver", host=False)
        self.assertEqual(r.status, 200, r.body)
        for host in (True, False):
            r = self.portal("GET", "/tasks?state=open", tok, host=host)
            self.assertEqual(r.status, 200, r.body)
            tasks = r.json()["items"]
            self.assertEqual(len(tasks), 1, tasks)
            self.assertIn("Start delivery of Contoso - Azure migration", tasks[0]["title"])

        # the client user holds no approver role; the msp admin is no Contoso user
        r = self.login("client_user")
        self.assertEqual(r.status, 200, r.body)
        r = self.portal("GET", "/tasks?state=open", r.json()["access_token"])
        self.assertEqual((r.status, r.json()["items"]), (200, []))
        self.assertEqual(self.login("msp_admin").status, 401)
        m = d["logins"]["msp_admin"]
        r = request(port, "POST", "/portal/v1/login", {"email": m["email"], "password": m["password"]})
        self.assertEqual(r.status, 200, r.body)   # on the API's own host: any portal user
        r = self.portal("GET", "/tasks?state=open", r.json()["access_token"])
        self.assertEqual(r.status, 404, r.body)

        # approve: the run goes on, the PSA gets the project, the CRM the link
        r = self.portal("POST", f"/tasks/{tasks[0]['id']}/decision", tok, {"decision": "approve", "comment": "ok"})
        self.assertEqual(r.status, 200, r.body)
        admin = self.admin()
        self.assertTrue(wait_until(lambda: self.run_of(admin, d["deal"]["run_id"])["state"] == "succeeded", 20),
                        self.run_of(admin, d["deal"]["run_id"]))
        r = self.portal("GET", "/status", tok)
        self.assertEqual((r.status, r.json()["approvals"]["open"]), (200, 0), r.body)
        calls = peers(d, "/calls").json()["items"]
        project = [c for c in calls if (c["system"], c["method"], c["path"]) == ("psa", "POST", "/psa/projects")]
        self.assertEqual(len(project), 1, calls)
        self.assertEqual(project[0]["body"]["external_ref"], "crm-deal-D-1001")
        self.assertEqual(project[0]["body"]["budget"], 75000)
        link = [c for c in calls if (c["method"], c["path"]) == ("PATCH", "/crm/deals/D-1001")]
        self.assertEqual(len(link), 1, calls)
        self.assertEqual(link[0]["body"]["stage"], "handed_off")
        self.assertTrue(link[0]["body"]["delivery_project_id"].startswith("PRJ-"))
        psa = peers(d, "/calls?system=psa").json()["items"]
        self.assertEqual({c["system"] for c in psa}, {"psa"})
        # the peers' own manners
        r = peers(d, "/nowhere/at/all")
        self.assertEqual((r.status, r.json()["error"]), (404, "not_found"))
        r = request(int(d["peers_url"].rsplit(":", 1)[1]), "POST", "/psa/tickets", b"{not json",
                    {"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)

        # a change request: ticket, classification, the change manager's approval
        r = self.portal("POST", "/requests", tok, {"type": "change", "fields": {
            "summary": "Add a guest Wi-Fi VLAN", "description": "One SSID for visitors", "estimated_cost": 2500}})
        self.assertEqual(r.status, 201, r.body)
        rid = r.json()["id"]

        def manager_task():
            items = self.portal("GET", "/tasks?state=open", tok).json()["items"]
            return [t for t in items if t["request_id"] == rid]
        self.assertTrue(wait_until(manager_task, 15), self.portal("GET", f"/requests/{rid}", tok).body)
        calls = peers(d, "/calls?system=psa").json()["items"]
        self.assertTrue([c for c in calls if c["method"] == "PATCH" and c["path"].startswith("/psa/tickets/") and
                         c["body"].get("change_type") == "standard"], calls)

        # the routes the API serves know nothing of the peers
        routes = subprocess.run([BIN, "routes"], capture_output=True, text=True, check=True).stdout
        paths = [l.split()[-1] for l in routes.splitlines()]
        self.assertEqual([p for p in paths if p == "/calls" or p.split("/")[1] in ("crm", "psa", "erp", "rmm", "llm")],
                         [])

        # ---- restart on the same state: nothing twice ----
        self.assertEqual(self.srv.stop(), 0)
        self.srv = None
        self.srv, again = start(self.state)
        admin = self.admin()
        for k in ("msp", "client", "logins"):
            self.assertEqual(again[k], d[k], k)
        self.assertEqual(again["deal"]["run_id"], d["deal"]["run_id"])
        self.assertEqual(again["deal"]["state"], "succeeded")
        cid, mid = d["client"]["id"], d["msp"]["id"]
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/runs?workflow=opportunity-to-project", admin)
        self.assertEqual([x["id"] for x in r.json()["items"]], [d["deal"]["run_id"]])
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/users", admin)
        self.assertEqual(sorted(u["email"] for u in r.json()["items"]),
                         sorted([d["logins"]["client_approver"]["email"], d["logins"]["client_user"]["email"]]))
        r = api(self.srv.port, "GET", f"/v1/tenants/{mid}/users", admin)
        self.assertEqual([u["email"] for u in r.json()["items"]], [d["logins"]["msp_admin"]["email"]])
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/installations", admin)
        self.assertEqual(len(r.json()["items"]), 4, r.body)
        # the connectors follow the peers' new port
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/connectors/psa", admin)
        self.assertEqual(r.json()["base_url"], again["peers_url"].replace("127.0.0.1", "localhost") + "/psa")
        # the same password still signs in
        r = self.login("client_approver", port=self.srv.port, demo=again)
        self.assertEqual(r.status, 200, r.body)

        # without demo.json: the users are made again with new passwords, the
        # deal's event is replayed under its Idempotency-Key (no second run)
        self.assertEqual(self.srv.stop(), 0)
        self.srv = None
        os.unlink(os.path.join(self.state, "demo.json"))
        self.srv, third = start(self.state)
        admin = self.admin()
        self.assertEqual((third["client"], third["deal"]["run_id"]), (d["client"], d["deal"]["run_id"]))
        self.assertNotEqual(third["logins"]["client_approver"]["password"], d["logins"]["client_approver"]["password"])
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/runs?workflow=opportunity-to-project", admin)
        self.assertEqual([x["id"] for x in r.json()["items"]], [d["deal"]["run_id"]])
        r = api(self.srv.port, "GET", f"/v1/tenants/{cid}/users", admin)
        self.assertEqual(len(r.json()["items"]), 2, r.body)
        self.assertEqual(self.login("client_approver", port=self.srv.port, demo=third).status, 200)
        self.assertEqual(self.login("client_approver", port=self.srv.port, demo=again).status, 401)


if __name__ == "__main__":
    unittest.main(verbosity=2)
