"""The portal page, end to end in headless Chromium: an msp's brand on a
client's portal (title, header, the --brand colour), sign-in, a change
request filed through the page's form, its approval decided in the page,
the request shown completed, and no product name in the page's text or
source.  Over plain HTTP: the page's headers (its CSP, nosniff, no
Server), ETag and 304, the Host and path forms, and 404 for a page of no
portal.

The browser is driven over the W3C WebDriver protocol (chromedriver) with
http.client, so the test needs nothing but Debian's chromium and
chromium-driver (infra/deps).  Without them it is skipped, except under
CI=true, where that is a failure.  A screenshot is written to
$MESON_BUILD_ROOT/test-artifacts/portal.png (also when the scenario fails).
"""
import base64
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import it_portal as base
from mfengine import EngineEnv
from mfharness import request
from mfidentity import api, wait_until

BRAND = "Northwind Care Desk"
COLOR = "#7a1fa2"
DOMAIN = "help.tailwind.example"
SLUG = "tailwind"
EMAIL = "ada@tailwind.example"
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
# CHANGE_FLOW with the form the portal renders and a milestone per step
FORM = {"title": "Change request", "description": "A change to your systems",
        "fields": [{"name": "summary", "type": "string", "title": "Summary", "required": True},
                   {"name": "estimated_cost", "type": "integer", "title": "Estimated cost", "minimum": 0},
                   {"name": "urgency", "type": "string", "title": "Urgency", "enum": ["low", "high"],
                    "default": "low"}]}
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C web element identifier


def artifacts_dir():
    d = os.path.join(os.environ.get("MESON_BUILD_ROOT") or os.getcwd(), "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chromium_binary():
    for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or ""):
        if p and os.access(p, os.X_OK):
            return p
    return None


class WebDriverError(AssertionError):
    pass


class Browser:
    """One chromedriver and its Chromium session, spoken to in W3C WebDriver."""

    def __init__(self, extra_args=()):
        self.port = free_port()
        self.profile = tempfile.mkdtemp(prefix="portal-web-chromium-")
        self.log = open(os.path.join(self.profile, "chromedriver.log"), "w+b")
        self.sid = None
        # its own process group: tearDown takes Chromium down with it
        self.proc = subprocess.Popen([shutil.which("chromedriver"), f"--port={self.port}"], stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_until(lambda: self._ready(), timeout=15, interval=0.1):
            raise WebDriverError("chromedriver did not start: " + self._log_tail())
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--user-data-dir={self.profile}/profile", "--window-size=1280,900", "--no-proxy-server",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                "--disable-features=HttpsUpgrades,HttpsFirstBalancedModeAutoEnable,Translate"] + list(extra_args)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "pageLoadStrategy": "normal",
                                                 "goog:chromeOptions": {"binary": chromium_binary(), "args": args}}}}
        self.sid = self.cmd("POST", "/session", caps)["sessionId"]
        self.cmd("POST", f"/session/{self.sid}/timeouts", {"script": 10000, "pageLoad": 20000, "implicit": 0})

    def _ready(self):
        try:
            return self.cmd("GET", "/status", timeout=2)["ready"]
        except (OSError, WebDriverError):
            return False

    def _log_tail(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-2000:]

    def cmd(self, method, path, body=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
            conn.request(method, path, body=data, headers={"Content-Type": "application/json; charset=utf-8"})
            r = conn.getresponse()
            out = json.loads(r.read() or b"{}")
        finally:
            conn.close()
        value = out.get("value") if isinstance(out, dict) else None
        if r.status != 200:
            raise WebDriverError(f"{method} {path}: {r.status} {json.dumps(value)[:800]}")
        return value

    def s(self, method, path, body=None):
        return self.cmd(method, f"/session/{self.sid}{path}", body)

    def go(self, url):
        self.s("POST", "/url", {"url": url})

    def js(self, script, *args):
        return self.s("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css):
        v = self.s("POST", "/element", {"using": "css selector", "value": css})
        if not isinstance(v, dict) or ELEMENT not in v:
            raise WebDriverError(f"find {css}: {v!r}")
        return v[ELEMENT]

    def click(self, css):
        self.s("POST", f"/element/{self.find(css)}/click")

    def type(self, css, text):
        el = self.find(css)
        self.s("POST", f"/element/{el}/clear")
        self.s("POST", f"/element/{el}/value", {"text": text})

    def wait_js(self, script, *args, timeout=15, what=None):
        """Polls script until it returns something truthy; returns it."""
        found = {}

        def check():
            found["v"] = self.js(script, *args)
            return found["v"]
        if not wait_until(check, timeout=timeout, interval=0.2):
            raise AssertionError(f"timed out waiting for {what or script}; page text: " +
                                 str(self.js("return document.body.innerText"))[:1500])
        return found["v"]

    def screenshot(self, path):
        png = base64.b64decode(self.s("GET", "/screenshot"))
        with open(path, "wb") as f:
            f.write(png)
        return path

    def close(self):
        try:
            if self.sid:
                self.cmd("DELETE", f"/session/{self.sid}", timeout=10)
        except (OSError, WebDriverError):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(5)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)	# a Chromium child left behind
        except ProcessLookupError:
            pass
        self.log.close()
        shutil.rmtree(self.profile, True)


class PortalPageTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = EngineEnv()
        cls.port, cls.msp_tok = cls.env.port, cls.env.msp_tok
        msp = cls.env.msp
        r = api(cls.port, "PUT", f"/v1/tenants/{msp['id']}/branding", cls.msp_tok,
                {"display_name": BRAND, "primary_color": COLOR, "support_email": "care@northwind.example"})
        assert r.status == 200, r.body
        cls.client = cls.env.p.create_client(msp["id"], SLUG)
        cid = cls.client["id"]
        r = api(cls.port, "POST", f"/v1/tenants/{cid}/domains", cls.msp_tok, {"domain": DOMAIN})
        assert r.status == 201, r.body
        r = api(cls.port, "POST", f"/v1/tenants/{cid}/domains/{DOMAIN}/confirm", cls.msp_tok)
        assert r.status == 200, r.body
        flow = dict(base.CHANGE_FLOW, request=FORM)
        flow["steps"] = [dict(base.CHANGE_FLOW["steps"][0], milestone="Approved"),
                         dict(base.CHANGE_FLOW["steps"][1], milestone="Done")]
        r = api(cls.port, "PUT", f"/v1/tenants/{cid}/workflows/portal-change", cls.msp_tok, flow)
        assert r.status in (200, 201), r.body
        r = api(cls.port, "POST", f"/v1/tenants/{cid}/users", cls.msp_tok,
                {"email": EMAIL, "password": base.PW, "roles": ["client_user", "change_approver"]})
        assert r.status == 201, r.body
        cls.browser = None

    @classmethod
    def tearDownClass(cls):
        assert cls.env.close() == [0]

    def tearDown(self):
        if self.browser:
            self.browser.close()
            self.browser = None

    def get(self, path, host="127.0.0.1", headers=None):
        h = dict(headers or {})
        h["Host"] = host
        return request(self.port, "GET", path, headers=h)

    # ---- over HTTP ----

    def test_page_headers_etag_and_unknown_portal(self):
        types = {"": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
                 "style.css": "text/css; charset=utf-8"}
        for name, ctype in types.items():
            for path, host in ((f"/portal/c/{SLUG}/{name}", "127.0.0.1"), (f"/portal/{name}", DOMAIN)):
                r = self.get(path, host)
                self.assertEqual(r.status, 200, (path, r.body[:200]))
                self.assertEqual(r.headers.get("content-type"), ctype, path)
                self.assertEqual(r.headers.get("content-security-policy"), PAGE_CSP, path)
                self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
                self.assertEqual(r.headers.get("x-frame-options"), "DENY")
                self.assertEqual(r.headers.get("cache-control"), "no-cache")
                self.assertNotIn("server", r.headers)
                self.assertNotIn("mspflow", (json.dumps(r.headers) + r.body.decode()).lower(), path)
                etag = r.headers.get("etag", "")
                self.assertRegex(etag, r'^"[0-9a-f]{32}"$')
                # the same bytes, the same tag; If-None-Match (weak or in a list) is a 304 without a body
                for inm in (etag, "W/" + etag, '"0000", ' + etag):
                    r2 = self.get(path, host, {"If-None-Match": inm})
                    self.assertEqual((r2.status, r2.body), (304, b""), inm)
                    self.assertEqual(r2.headers.get("etag"), etag)
                    self.assertNotIn("content-length", r2.headers)
                self.assertEqual(self.get(path, host, {"If-None-Match": '"other"'}).status, 200)
        page = self.get(f"/portal/c/{SLUG}/").body.decode()
        self.assertIn('src="app.js"', page)
        self.assertIn('href="style.css"', page)
        self.assertNotIn(BRAND, page)	# the page is the same for every portal; the brand comes from the API
        # no portal, no page: an unknown slug, an unknown Host, an msp's slug, the other form's Host
        for path, host in (("/portal/c/nobody/", "127.0.0.1"), ("/portal/c/nobody/app.js", "127.0.0.1"),
                           ("/portal/", "nowhere.example"), ("/portal/style.css", "127.0.0.1"),
                           ("/portal/c/eng-msp/", "127.0.0.1"), ("/portal/c/eng-client/", DOMAIN),
                           ("/portal/c/Bad_Slug/", "127.0.0.1")):
            r = self.get(path, host)
            self.assertEqual(r.status, 404, (path, host))
            self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
            self.assertIn(b"not available", r.body)
            self.assertNotIn(b"mspflow", r.body.lower())
        # without the trailing slash: to the page, whose assets are relative to it
        r = self.get(f"/portal/c/{SLUG}")
        self.assertEqual((r.status, r.headers.get("location")), (308, f"/portal/c/{SLUG}/"))
        r = self.get("/portal", DOMAIN)
        self.assertEqual((r.status, r.headers.get("location")), (308, "/portal/"))
        self.assertEqual(self.get("/portal/c/nobody").status, 404)
        self.assertEqual(self.get("/portal/nothing.js", DOMAIN).status, 404)

    # ---- in the browser ----

    def start_browser(self):
        missing = [b for b in ("chromedriver",) if not shutil.which(b)] + ([] if chromium_binary() else ["chromium"])
        if missing:
            why = f"{' and '.join(missing)} not installed (Debian: chromium chromium-driver; infra/deps)"
            if os.environ.get("CI") == "true":
                self.fail(why)
            self.skipTest(why)
        self.browser = Browser([f"--host-resolver-rules=MAP {DOMAIN} 127.0.0.1"])
        return self.browser

    def assert_no_product_name(self, b):
        text = b.js("return document.body.innerText + ' ' + document.title")
        self.assertNotIn("mspflow", text.lower())
        self.assertNotIn("mspflow", b.s("GET", "/source").lower())

    def test_sign_in_request_approve_complete(self):
        b = self.start_browser()
        shot = os.path.join(artifacts_dir(), "portal.png")
        try:
            self.scenario(b)
        except Exception:
            try:
                print("# failure screenshot:", b.screenshot(os.path.join(artifacts_dir(), "portal-failure.png")))
            except Exception as e:  # noqa: BLE001 - the first failure is the one to report
                print("# no failure screenshot:", e)
            raise
        print("# screenshot:", b.screenshot(shot))

    def scenario(self, b):
        base_url = f"http://127.0.0.1:{self.port}"
        t0 = time.time()
        # the brand, by path
        b.go(f"{base_url}/portal/c/{SLUG}/")
        b.wait_js("return document.body.getAttribute('data-ready') === 'true'", what="branding")
        self.assertEqual(b.js("return document.title"), BRAND)
        self.assertEqual(b.js("return document.getElementById('brand-name').textContent"), BRAND)
        self.assertEqual(b.js("return getComputedStyle(document.documentElement)"
                              ".getPropertyValue('--brand').trim()"), COLOR)
        self.assertEqual(b.js("return document.getElementById('support-email').textContent"),
                         "care@northwind.example")
        self.assert_no_product_name(b)

        # sign-in: a wrong password first, then the right one
        b.wait_js("return !document.getElementById('view-login').hidden", what="sign-in view")
        b.type("[data-testid=login-email]", EMAIL)
        b.type("[data-testid=login-password]", "not the password")
        b.click("[data-testid=login-submit]")
        msg = b.wait_js("var e = document.getElementById('login-error'); return !e.hidden && e.textContent",
                        what="sign-in error")
        self.assertIn("not correct", msg)
        b.type("[data-testid=login-password]", base.PW)
        b.click("[data-testid=login-submit]")
        b.wait_js("return !document.getElementById('view-submit').hidden && "
                  "!!document.getElementById('field-summary')", what="request form")
        self.assertTrue(b.js("return !!sessionStorage.getItem('portal.token:/portal/v1/c/" + SLUG + "')"))

        # the request form: the workflow's own fields, from /request-types
        types = b.wait_js("return document.getElementById('request-type').options.length > 0 && "
                          "Array.from(document.getElementById('request-type').options).map(o => o.textContent)",
                          what="request types")
        self.assertEqual(types, ["Change request"])
        b.wait_js("return !!document.getElementById('field-estimated_cost')", what="the type's form")
        self.assertEqual(b.js("return document.querySelector('label[for=field-summary]').textContent"), "Summary *")
        self.assertEqual(b.js("return document.getElementById('field-estimated_cost').type"), "number")
        self.assertEqual(b.js("return Array.from(document.getElementById('field-urgency').options)"
                              ".map(o => o.textContent)"), ["low", "high"])
        # a required field left empty is shown next to the field
        b.click("[data-testid=request-submit]")
        err = b.wait_js("var e = document.getElementById('error-summary'); return !e.hidden && e.textContent",
                        what="field error")
        self.assertIn("Required", err)
        b.type("#field-summary", "Open port 443 <b>now</b>")
        # the server's validation, next to the field (RFC 9457 errors[])
        b.type("#field-estimated_cost", "-5")
        b.click("[data-testid=request-submit]")
        err = b.wait_js("var e = document.getElementById('error-estimated_cost'); return !e.hidden && e.textContent",
                        what="the server's field error")
        self.assertTrue(err)
        self.assertEqual(b.js("return document.getElementById('field-estimated_cost')"
                              ".getAttribute('aria-invalid')"), "true")
        b.type("#field-estimated_cost", "250")
        b.js("var s = document.getElementById('field-urgency'); s.selectedIndex = 1; "
             "s.dispatchEvent(new Event('change'))")
        b.click("[data-testid=request-submit]")
        rid = b.wait_js("var e = document.getElementById('request-created'); "
                        "return !e.hidden && e.getAttribute('data-request-id')", what="request created")
        r = api(self.port, "GET", f"/portal/v1/c/{SLUG}/requests/{rid}", self.token_of(b))
        self.assertEqual(r.json()["fields"], {"summary": "Open port 443 <b>now</b>", "estimated_cost": 250,
                                              "urgency": "high"})

        # approve it where the approvals are
        b.click("[data-testid=nav-approvals]")
        sel = f"[data-testid=task-item][data-request-id='{rid}']"
        b.wait_js("return !!document.querySelector(arguments[0] + ' [data-testid=task-approve]')", sel,
                  what="the approval task", timeout=20)
        title = b.js("return document.querySelector(arguments[0] + ' .item-title').textContent", sel)
        # data shown as text, never as markup
        self.assertEqual(title, "Approve change: Open port 443 <b>now</b>")
        b.type(f"{sel} [data-testid=task-comment]", "go ahead")
        b.click(f"{sel} [data-testid=task-approve]")
        b.wait_js("return !document.querySelector(arguments[0])", sel, what="the task gone", timeout=15)

        # the request completes; the list follows by itself (polling)
        b.click("[data-testid=nav-requests]")
        b.wait_js("var e = document.getElementById('request-' + arguments[0]); "
                  "return e && e.getAttribute('data-state') === 'completed'", rid, what="request completed",
                  timeout=25)
        self.assertEqual(b.js("return Array.from(document.querySelectorAll("
                              "'#request-' + arguments[0] + ' .milestones li')).map(l => [l.className, "
                              "l.querySelector('.ms-title').textContent])", rid),
                         [["ms-reached", "Approved"], ["ms-reached", "Done"]])
        b.click("[data-testid=nav-status]")
        b.wait_js("return document.getElementById('status-sla').getAttribute('data-sla')", what="status")
        done = b.wait_js("var e = document.querySelector('[data-testid=count-completed]'); "
                         "return e && e.textContent", what="completed count")
        self.assertGreaterEqual(int(done), 1)
        recent = b.wait_js("return Array.from(document.querySelectorAll('#status-milestones .ms-title'))"
                           ".map(e => e.textContent)", what="recent milestones")
        self.assertEqual(sorted(recent), ["Approved", "Done"])  # newest first; these two may share a time
        self.assertEqual(b.js("return document.querySelectorAll('b').length"), 0)
        self.assert_no_product_name(b)

        # the Host form: the same page, the API at /portal/v1
        b.click("[data-testid=nav-requests]")
        b.go(f"http://{DOMAIN}:{self.port}/portal/")
        b.wait_js("return document.body.getAttribute('data-ready') === 'true'", what="branding by Host")
        self.assertEqual(b.js("return document.title"), BRAND)
        b.wait_js("return !document.getElementById('view-login').hidden", what="sign-in by Host")
        b.type("[data-testid=login-email]", EMAIL)
        b.type("[data-testid=login-password]", base.PW)
        b.click("[data-testid=login-submit]")
        b.wait_js("return !document.getElementById('nav').hidden", what="signed in by Host")
        b.click("[data-testid=nav-requests]")
        b.wait_js("var e = document.getElementById('request-' + arguments[0]); "
                  "return e && e.getAttribute('data-state') === 'completed'", rid, what="requests by Host")
        self.assert_no_product_name(b)

        # no portal: the neutral page
        b.go(f"{base_url}/portal/c/nobody/")
        self.assertIn("not available", b.js("return document.body.innerText"))
        self.assert_no_product_name(b)
        # back to the portal, still signed in (this tab's session), for the screenshot
        b.go(f"http://{DOMAIN}:{self.port}/portal/")
        b.wait_js("return !document.getElementById('nav').hidden", what="signed in again")
        b.click("[data-testid=nav-requests]")
        b.wait_js("return !!document.getElementById('request-' + arguments[0])", rid, what="requests again")
        self.assertLess(time.time() - t0, 60)

    def token_of(self, b):
        return b.js("return sessionStorage.getItem(arguments[0])", "portal.token:/portal/v1/c/" + SLUG)


if __name__ == "__main__":
    unittest.main(verbosity=2)
