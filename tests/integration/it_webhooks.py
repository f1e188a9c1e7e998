"""Webhooks end to end: inbound hooks (secret shown once, Standard
Webhooks signatures verified on the raw body, 5-minute tolerance, a
replayed webhook-id acknowledged without a second event or run, nothing
stored for a bad signature, suspended tenants refused) and outbound
subscriptions (deliveries signed the same way and verified here with a
plain HMAC, retried with backoff until delivered or failed, Retry-After
honoured, the delivery log, the tenant's egress policy and the platform's
egress guard refusing what they must)."""
import base64
import hashlib
import hmac
import json
import re
import threading
import time
import unittest
import uuid

from mfharness import request
from mfidentity import Platform, api, wait_until
from mfmock import MockServer, Reply


def sign(secret, msg_id, ts, body):
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


class Receiver:
    """Mock webhook receivers; answers may depend on how often a message
    (webhook-id) was seen."""

    def __init__(self):
        self.lock = threading.Lock()
        self.seen = {}

        def count(rec):
            with self.lock:
                k = (rec.path, rec.header("webhook-id"))
                self.seen[k] = self.seen.get(k, 0) + 1
                return self.seen[k]

        self.mock = MockServer({
            "/ok": lambda rec: Reply(200, {"ok": True}),
            "/flaky": lambda rec: Reply(500, {"error": "boom"}) if count(rec) <= 2 else Reply(204),
            "/slow-down": lambda rec: Reply(503, {"error": "busy"}, headers={"Retry-After": "2"})
            if count(rec) == 1 else Reply(200),
            "/down": lambda rec: Reply(500, {"error": "down"}),
        })
        self.port = self.mock.port

    def requests(self, path):
        return self.mock.seen(path)


class WebhooksTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.rx = Receiver()
        cls.p = Platform(config={"egress_allow": "127.0.0.1/32, ::1/128", "webhook_retry_base_ms": 300,
                                 "webhook_max_attempts": 3, "engine_poll_ms": 200})
        cls.base = f"http://localhost:{cls.rx.port}"
        platform_id = cls.p.admin["tenant_id"]
        r = api(cls.p.port, "PUT", f"/v1/tenants/{platform_id}/policy", cls.p.admin_token,
                {"egress": {"allow_hosts": ["localhost"]}})
        assert r.status == 200, r.body
        cls.msp = cls.p.create_tenant("msp", "wh-msp")
        cls.client = cls.p.create_client(cls.msp["id"], "wh-client")
        cls.other = cls.p.create_tenant("msp", "wh-other")
        cls.tid = cls.client["id"]
        cls.tok = cls.p.token(cls.msp["id"])
        cls.user_tok = cls.p.token(cls.tid, roles=["client_user"])
        cls.other_tok = cls.p.token(cls.other["id"])
        cls.schema = cls.p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{cls.tid}'")
        cls.secrets = []
        time.sleep(1.1)  # the policy change reaches every worker's directory

    @classmethod
    def tearDownClass(cls):
        rc = cls.p.close()
        cls.rx.mock.close()
        assert rc == [0], rc

    # ---- helpers ----

    def call(self, method, path, body=None, tok=None, tid=None, headers=None):
        return api(self.p.port, method, f"/v1/tenants/{tid or self.tid}{path}", tok or self.tok, body, headers)

    def hook(self, event_type, tid=None):
        r = self.call("POST", "/hooks", {"event_type": event_type}, tid=tid)
        self.assertEqual(r.status, 201, r.body)
        h = r.json()
        self.secrets.append(h["secret"])
        return h

    def post(self, h, data, msg_id=None, ts=None, secret=None, headers=None, raw=None):
        body = raw if raw is not None else json.dumps(data).encode()
        msg_id = msg_id or "msg_" + uuid.uuid4().hex
        ts = str(int(time.time()) if ts is None else ts)
        hd = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
              "webhook-signature": sign(secret or h["secret"], msg_id, ts, body)}
        if headers is not None:
            hd = headers
        return api(self.p.port, "POST", h["url"], None, body, hd)

    def attempts_metric(self):
        body = request(self.p.servers[0].admin_port, "GET", "/metrics").body.decode()
        return {k: int(v) for k, v in
                re.findall(r'^mspflow_webhook_attempts_total\{outcome="(\w+)"\} (\d+)$', body, re.M)}

    def sql(self, q):
        return self.p.pg.psql(q)

    def events_of(self, h):
        return int(self.sql(f"SELECT count(*) FROM {self.schema}.events WHERE source = 'hook:{h['id']}'"))

    def subscribe(self, name, path, events):
        r = self.call("PUT", f"/webhooks/{name}", {"url": self.base + path, "events": events})
        self.assertEqual(r.status, 201, r.body)
        self.secrets.append(r.json()["secret"])
        return r.json()

    def deliveries(self, name):
        r = self.call("GET", f"/webhooks/{name}/deliveries")
        self.assertEqual(r.status, 200, r.body)
        return r.json()["items"]

    def settled(self, name, n=1):
        def done():
            items = self.deliveries(name)
            return items if len(items) >= n and all(i["state"] != "pending" for i in items) else None
        items = wait_until(done, timeout=30, interval=0.2)
        self.assertTrue(items, self.deliveries(name))
        return items

    # ---- inbound ----

    def test_hook_secret_shown_once_and_management(self):
        h = self.hook("crm.ticket.opened")
        self.assertEqual(set(h), {"id", "url", "secret", "event_type"})
        self.assertEqual(h["url"], f"/hooks/{h['id']}")
        self.assertTrue(h["secret"].startswith("whsec_"))
        self.assertEqual(len(base64.b64decode(h["secret"][6:])), 32)
        r = self.call("GET", "/hooks")
        self.assertEqual(r.status, 200, r.body)
        self.assertIn(h["id"], [i["id"] for i in r.json()["items"]])
        self.assertNotIn(h["secret"], r.body.decode())
        self.assertNotIn("secret", json.dumps(r.json()["items"]))
        # stored sealed, never in clear
        self.assertNotIn(h["secret"][6:], self.sql(f"SELECT string_agg(t::text, ' ') FROM {self.schema}.hooks t"))
        # validation, permission, reach
        r = self.call("POST", "/hooks", {"event_type": "Not An Event"})
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json()["errors"][0]["path"], "/event_type")
        self.assertEqual(self.call("POST", "/hooks", {"event_type": "a.b", "x": 1}).status, 400)
        self.assertEqual(self.call("POST", "/hooks", {"event_type": "a.b"}, tok=self.user_tok).status, 403)
        self.assertEqual(self.call("GET", "/hooks", tok=self.other_tok).status, 404)
        # delete: the URL stops answering
        self.assertEqual(self.call("DELETE", f"/hooks/{h['id']}", tok=self.other_tok).status, 404)
        self.assertEqual(self.call("DELETE", f"/hooks/{h['id']}").status, 204)
        self.assertEqual(self.call("DELETE", f"/hooks/{h['id']}").status, 404)
        self.assertEqual(self.post(h, {"x": 1}).status, 404)

    def test_signed_message_stores_one_event_and_starts_runs(self):
        etype = "crm.deal.won"
        definition = {"trigger": {"event": etype, "when": "data.amount > 10"},
                      "steps": [{"id": "calc", "type": "transform", "output": {"double": "data.amount * 2"}}]}
        self.sql(f"INSERT INTO {self.schema}.workflows (name, latest_version, trigger_event, created_by) "
                 f"VALUES ('deal-won', 1, '{etype}', 'test'); "
                 f"INSERT INTO {self.schema}.workflow_versions (workflow, version, definition, created_by) "
                 f"VALUES ('deal-won', 1, '{json.dumps(definition)}', 'test')")
        h = self.hook(etype)
        r = self.post(h, {"amount": 50, "deal": "D-1"}, msg_id="msg_deal_1")
        self.assertEqual(r.status, 202, r.body)
        out = r.json()
        self.assertEqual(len(out["run_ids"]), 1)
        self.assertEqual(self.events_of(h), 1)
        row = self.sql(f"SELECT type || '|' || data::text || '|' || idempotency_key FROM {self.schema}.events "
                       f"WHERE id = '{out['event_id']}'")
        self.assertEqual(row, f'{etype}|{{"deal": "D-1", "amount": 50}}|hook:{h["id"]}:msg_deal_1')
        run = out["run_ids"][0]
        state = wait_until(lambda: self.sql(f"SELECT state FROM {self.schema}.runs WHERE id = '{run}' "
                                            f"AND state = 'succeeded'"), timeout=20)
        self.assertEqual(state, "succeeded")
        # the same message again (a sender's retry): acknowledged, nothing new
        r2 = self.post(h, {"amount": 50, "deal": "D-1"}, msg_id="msg_deal_1")
        self.assertEqual(r2.status, 200, r2.body)
        self.assertEqual(r2.json()["event_id"], out["event_id"])
        self.assertEqual(r2.json()["run_ids"], out["run_ids"])
        self.assertEqual(self.events_of(h), 1)
        self.assertEqual(self.sql(f"SELECT count(*) FROM {self.schema}.runs WHERE workflow = 'deal-won'"), "1")
        # a `when` that does not hold: an event, no run
        r3 = self.post(h, {"amount": 1})
        self.assertEqual(r3.status, 202, r3.body)
        self.assertEqual(r3.json()["run_ids"], [])
        self.assertEqual(self.events_of(h), 2)

    def test_bad_messages_are_refused_and_store_nothing(self):
        h = self.hook("crm.contact.changed")
        other = self.hook("crm.contact.changed")
        cases = {
            "wrong secret": self.post(h, {"a": 1}, secret=other["secret"]),
            "stale": self.post(h, {"a": 1}, ts=int(time.time()) - 400),
            "future": self.post(h, {"a": 1}, ts=int(time.time()) + 400),
            "no headers": self.post(h, {"a": 1}, headers={"Content-Type": "application/json"}),
        }
        body = b'{"a": 1}'
        ts = str(int(time.time()))
        good = sign(h["secret"], "msg_t", ts, body)
        cases["body changed"] = api(self.p.port, "POST", h["url"], None, b'{"a": 2}', {
            "Content-Type": "application/json", "webhook-id": "msg_t", "webhook-timestamp": ts,
            "webhook-signature": good})
        cases["id changed"] = api(self.p.port, "POST", h["url"], None, body, {
            "Content-Type": "application/json", "webhook-id": "msg_u", "webhook-timestamp": ts,
            "webhook-signature": good})
        for what, r in cases.items():
            self.assertEqual(r.status, 401, f"{what}: {r.body}")
            self.assertEqual(r.headers["content-type"], "application/problem+json", what)
        self.assertEqual(cases["stale"].json()["code"], "timestamp_out_of_range")
        self.assertEqual(cases["wrong secret"].json()["code"], "bad_signature")
        self.assertEqual(self.events_of(h), 0)
        # a signature among others (a sender rotating its secret) is
        # enough, within the tolerated clock skew
        ts = str(int(time.time()) - 200)
        r = api(self.p.port, "POST", h["url"], None, body, {
            "Content-Type": "application/json", "webhook-id": "msg_rot", "webhook-timestamp": ts,
            "webhook-signature": "v1a,AAAA " + sign(other["secret"], "msg_rot", ts, body) + " " +
            sign(h["secret"], "msg_rot", ts, body)})
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(self.events_of(h), 1)
        # a body that is not JSON, correctly signed: 400 and nothing stored
        r = self.post(h, None, raw=b"not json")
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(self.events_of(h), 1)
        # a message over the hooks' size cap: 413 before any work
        r = self.post(h, None, raw=b'{"pad": "' + b"x" * (256 * 1024) + b'"}')
        self.assertEqual(r.status, 413, r.body)
        self.assertEqual(self.events_of(h), 1)
        # unknown hooks
        fake = {"url": f"/hooks/{uuid.uuid4()}", "secret": h["secret"]}
        self.assertEqual(self.post(fake, {"a": 1}).status, 404)
        self.assertEqual(api(self.p.port, "POST", "/hooks/not-a-uuid", None, body,
                             {"Content-Type": "application/json"}).status, 404)

    def test_suspended_tenant_is_refused(self):
        cl = self.p.create_client(self.msp["id"], "wh-suspended")
        h = self.hook("crm.lead.new", tid=cl["id"])
        self.assertEqual(self.post(h, {"a": 1}).status, 202)
        r = api(self.p.port, "POST", f"/v1/tenants/{cl['id']}/suspend", self.tok)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.post(h, {"a": 2}).status, 404)
        api(self.p.port, "POST", f"/v1/tenants/{cl['id']}/resume", self.tok)
        self.assertEqual(self.post(h, {"a": 3}).status, 202)

    # ---- outbound ----

    def test_subscription_management(self):
        w = self.subscribe("mgmt", "/ok", ["crm.*", "billing.invoice.paid"])
        self.assertTrue(w["secret"].startswith("whsec_"))
        self.assertEqual(w["version"], 1)
        self.assertEqual(w["events"], ["crm.*", "billing.invoice.paid"])
        r = self.call("GET", "/webhooks/mgmt")
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("secret", r.json())
        r = self.call("PUT", "/webhooks/mgmt", {"url": self.base + "/ok?v=2", "events": ["*"]})
        self.assertEqual(r.status, 200, r.body)
        self.assertNotIn("secret", r.json())
        self.assertEqual(r.json()["version"], 2)
        r = self.call("GET", "/webhooks")
        self.assertEqual(r.status, 200, r.body)
        self.assertIn("mgmt", [i["name"] for i in r.json()["items"]])
        self.assertNotIn(w["secret"], r.body.decode())
        bad = [
            ({"url": "ftp://localhost/x", "events": ["a.b"]}, "/url"),
            ({"url": "http://169.254.169.254/latest", "events": ["a.b"]}, "/url"),
            ({"url": "http://10.1.2.3/", "events": ["a.b"]}, "/url"),
            ({"url": "http://u:p@localhost/", "events": ["a.b"]}, "/url"),
            ({"url": self.base, "events": []}, "/events"),
            ({"url": self.base, "events": ["Bad"]}, "/events/0"),
            ({"url": self.base, "events": ["a.b", "a.b"]}, "/events/1"),
            ({"url": self.base, "events": ["a.b"] * 0 + [f"e.x{i}" for i in range(65)]}, "/events"),
        ]
        for body, path in bad:
            r = self.call("PUT", "/webhooks/bad", body)
            self.assertEqual(r.status, 400, (body, r.body))
            self.assertEqual(r.json()["errors"][0]["path"], path, body)
        self.assertEqual(self.call("PUT", "/webhooks/bad", {"url": self.base, "events": ["a.b"], "x": 1}).status, 400)
        self.assertEqual(self.call("PUT", "/webhooks/BadName", {"url": self.base, "events": ["a.b"]}).status, 404)
        self.assertEqual(self.call("PUT", "/webhooks/x", {"url": self.base, "events": ["a.b"]},
                                   tok=self.user_tok).status, 403)
        self.assertEqual(self.call("GET", "/webhooks/mgmt", tok=self.other_tok).status, 404)
        self.assertEqual(self.call("DELETE", "/webhooks/mgmt").status, 204)
        self.assertEqual(self.call("GET", "/webhooks/mgmt").status, 404)
        self.assertEqual(self.call("GET", "/webhooks/mgmt/deliveries").status, 404)

    def test_delivery_is_signed_and_logged(self):
        w = self.subscribe("signed", "/ok", ["shop.*"])
        h = self.hook("shop.order.placed")
        r = self.post(h, {"order": 42})
        self.assertEqual(r.status, 202, r.body)
        event_id = r.json()["event_id"]
        got = wait_until(lambda: [x for x in self.rx.requests("/ok") if json.loads(x.body)["id"] == event_id],
                         timeout=20)
        self.assertEqual(len(got), 1)
        rec = got[0]
        self.assertEqual(rec.method, "POST")
        self.assertEqual(rec.header("Content-Type"), "application/json")
        msg_id, ts = rec.header("webhook-id"), rec.header("webhook-timestamp")
        self.assertLessEqual(abs(int(ts) - time.time()), 60)
        self.assertEqual(rec.header("webhook-signature"), sign(w["secret"], msg_id, ts, rec.body))
        body = json.loads(rec.body)
        self.assertEqual(body["type"], "shop.order.placed")
        self.assertEqual(body["data"], {"order": 42})
        self.assertEqual(body["tenant_id"], self.tid)
        self.assertTrue(body["occurred_at"].endswith("Z"))
        items = self.settled("signed")
        self.assertEqual(len(items), 1)
        d = items[0]
        self.assertEqual(d["id"], msg_id)
        self.assertEqual((d["event_id"], d["event_type"], d["state"], d["attempts"], d["last_status"]),
                         (event_id, "shop.order.placed", "delivered", 1, 200))
        self.assertEqual([a["status"] for a in d["history"]], [200])
        # an event of a type nobody subscribed to makes no delivery
        h2 = self.hook("other.thing.done")
        self.assertEqual(self.post(h2, {}).status, 202)
        time.sleep(0.5)
        self.assertEqual(len(self.deliveries("signed")), 1)

    def test_secrets_survive_data_key_rotation(self):
        w = self.subscribe("rotated", "/ok", ["rot.*"])
        h = self.hook("rot.key.turned")
        r = self.call("POST", "/vault/rotate")
        self.assertEqual(r.status, 200, r.body)
        self.assertGreaterEqual(r.json()["reencrypted"], 2, "hook and webhook secrets re-sealed")
        self.assertEqual(int(self.sql(f"SELECT count(*) FROM platform.tenant_keys WHERE tenant_id = '{self.tid}'")),
                         1, "the old data key is gone")
        r = self.post(h, {"after": "rotation"})
        self.assertEqual(r.status, 202, r.body)
        event_id = r.json()["event_id"]
        got = wait_until(lambda: [x for x in self.rx.requests("/ok") if json.loads(x.body)["id"] == event_id],
                         timeout=20)
        self.assertEqual(len(got), 1, "delivered under the re-sealed secret")
        rec = got[0]
        self.assertEqual(rec.header("webhook-signature"),
                         sign(w["secret"], rec.header("webhook-id"), rec.header("webhook-timestamp"), rec.body))

    def test_retried_until_delivered(self):
        self.subscribe("flaky", "/flaky", ["ops.flaky.test"])
        h = self.hook("ops.flaky.test")
        before = self.attempts_metric()
        self.assertEqual(self.post(h, {"n": 1}).status, 202)
        d = self.settled("flaky")[0]
        after = self.attempts_metric()
        self.assertGreaterEqual(after["retrying"] - before["retrying"], 2, (before, after))
        self.assertGreaterEqual(after["delivered"] - before["delivered"], 1, (before, after))
        self.assertEqual((d["state"], d["attempts"], d["last_status"]), ("delivered", 3, 204))
        self.assertEqual([a["status"] for a in d["history"]], [500, 500, 204])
        self.assertEqual([a["attempt"] for a in d["history"]], [1, 2, 3])
        sent = [x for x in self.rx.requests("/flaky") if x.header("webhook-id") == d["id"]]
        self.assertEqual(len(sent), 3)
        # every attempt carries the same message id, freshly signed
        gaps = [b.at - a.at for a, b in zip(sent, sent[1:])]
        self.assertTrue(all(g >= 0.25 for g in gaps), gaps)
        self.assertGreater(gaps[1], gaps[0] * 1.2, gaps)   # the wait doubles

    def test_retry_after_is_honoured(self):
        self.subscribe("slow", "/slow-down", ["ops.slow.test"])
        h = self.hook("ops.slow.test")
        self.assertEqual(self.post(h, {}).status, 202)
        d = self.settled("slow")[0]
        self.assertEqual((d["state"], d["attempts"]), ("delivered", 2))
        sent = [x for x in self.rx.requests("/slow-down") if x.header("webhook-id") == d["id"]]
        self.assertEqual(len(sent), 2)
        self.assertGreaterEqual(sent[1].at - sent[0].at, 1.9)

    def test_failed_after_max_attempts(self):
        self.subscribe("down", "/down", ["ops.down.test"])
        h = self.hook("ops.down.test")
        self.assertEqual(self.post(h, {}).status, 202)
        d = self.settled("down")[0]
        self.assertEqual((d["state"], d["attempts"], d["last_status"]), ("failed", 3, 500))
        self.assertIn("500", d["last_error"])
        self.assertIsNone(d["next_attempt_at"])
        self.assertEqual(self.sql(f"SELECT count(*) FROM platform.delivery_queue WHERE delivery_id = '{d['id']}'"), "0")

    def test_hosts_outside_the_tenant_policy_are_refused(self):
        # a literal address passes the platform's allow-list but is never
        # in a tenant's allow_hosts; a name that is not listed neither
        for name, url in (("literal", f"http://127.0.0.1:{self.rx.port}/ok"),
                          ("unlisted", "http://receiver.example.invalid/ok")):
            r = self.call("PUT", f"/webhooks/{name}", {"url": url, "events": ["ops.policy.test"]})
            self.assertEqual(r.status, 201, r.body)
        before = len(self.rx.requests("/ok"))
        h = self.hook("ops.policy.test")
        self.assertEqual(self.post(h, {}).status, 202)
        for name in ("literal", "unlisted"):
            d = self.settled(name)[0]
            self.assertEqual((d["state"], d["attempts"], d["last_status"]), ("failed", 3, None))
            self.assertTrue(d["last_error"].startswith("egress_refused"), d["last_error"])
        self.assertEqual(len(self.rx.requests("/ok")), before)

    def test_zz_no_secret_in_logs(self):
        out = self.p.servers[0].output()
        for s in self.secrets:
            self.assertNotIn(s, out)
            self.assertNotIn(s[6:], out)


class ShutdownTest(unittest.TestCase):
    """SIGTERM while a delivery is on the wire: a clean exit, and the
    delivery stays pending (its lease runs out and another worker sends it
    again with the same webhook-id)."""

    def test_stop_with_delivery_in_flight(self):
        mock = MockServer({"/hang": lambda rec: Reply(200, delay=8)})
        p = Platform(config={"egress_allow": "127.0.0.1/32, ::1/128", "engine_poll_ms": 200})
        try:
            r = api(p.port, "PUT", f"/v1/tenants/{p.admin['tenant_id']}/policy", p.admin_token,
                    {"egress": {"allow_hosts": ["localhost"]}})
            self.assertEqual(r.status, 200, r.body)
            msp = p.create_tenant("msp", "sd-msp")
            tok = p.token(msp["id"])
            t = msp["id"]
            r = api(p.port, "PUT", f"/v1/tenants/{t}/webhooks/hang", tok,
                    {"url": f"http://localhost:{mock.port}/hang", "events": ["*"]})
            self.assertEqual(r.status, 201, r.body)
            h = api(p.port, "POST", f"/v1/tenants/{t}/hooks", tok, {"event_type": "a.b"}).json()
            body, ts = b"{}", str(int(time.time()))
            r = api(p.port, "POST", h["url"], None, body, {
                "Content-Type": "application/json", "webhook-id": "m1", "webhook-timestamp": ts,
                "webhook-signature": sign(h["secret"], "m1", ts, body)})
            self.assertEqual(r.status, 202, r.body)
            self.assertTrue(wait_until(lambda: mock.seen("/hang"), timeout=20))
            t0 = time.time()
            self.assertEqual(p.servers[0].stop(), 0)
            self.assertLess(time.time() - t0, 6)   # it did not wait for the receiver
            schema = p.pg.psql(f"SELECT schema_name FROM platform.tenants WHERE id = '{t}'")
            self.assertEqual(p.pg.psql(f"SELECT state || ':' || attempts FROM {schema}.deliveries"), "pending:0")
            self.assertEqual(p.pg.psql("SELECT count(*) FROM platform.delivery_queue"), "1")
        finally:
            p.close()
            mock.close()


class EgressGuardTest(unittest.TestCase):
    """Without the platform's allow-list, a receiver on loopback is
    refused at connect time even when the tenant's policy lists its name."""

    def test_loopback_receiver_refused(self):
        rx = Receiver()
        p = Platform(config={"webhook_retry_base_ms": 200, "webhook_max_attempts": 2, "engine_poll_ms": 200})
        try:
            r = api(p.port, "PUT", f"/v1/tenants/{p.admin['tenant_id']}/policy", p.admin_token,
                    {"egress": {"allow_hosts": ["localhost"]}})
            self.assertEqual(r.status, 200, r.body)
            msp = p.create_tenant("msp", "eg-msp")
            tok = p.token(msp["id"])
            t = msp["id"]
            # a literal loopback URL is refused when it is saved
            r = api(p.port, "PUT", f"/v1/tenants/{t}/webhooks/lit", tok,
                    {"url": f"http://127.0.0.1:{rx.port}/ok", "events": ["a.b"]})
            self.assertEqual(r.status, 400, r.body)
            r = api(p.port, "PUT", f"/v1/tenants/{t}/webhooks/named", tok,
                    {"url": f"http://localhost:{rx.port}/ok", "events": ["a.b"]})
            self.assertEqual(r.status, 201, r.body)
            time.sleep(1.1)
            r = api(p.port, "POST", f"/v1/tenants/{t}/hooks", tok, {"event_type": "a.b"})
            h = r.json()
            body = b"{}"
            ts = str(int(time.time()))
            r = api(p.port, "POST", h["url"], None, body, {
                "Content-Type": "application/json", "webhook-id": "m1", "webhook-timestamp": ts,
                "webhook-signature": sign(h["secret"], "m1", ts, body)})
            self.assertEqual(r.status, 202, r.body)

            def done():
                items = api(p.port, "GET", f"/v1/tenants/{t}/webhooks/named/deliveries", tok).json()["items"]
                return items if items and items[0]["state"] != "pending" else None
            items = wait_until(done, timeout=30, interval=0.2)
            self.assertTrue(items)
            self.assertEqual(items[0]["state"], "failed")
            self.assertTrue(items[0]["last_error"].startswith("egress_refused"), items[0]["last_error"])
            self.assertEqual(rx.requests("/ok"), [])
        finally:
            rc = p.close()
            rx.mock.close()
        self.assertEqual(rc, [0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
