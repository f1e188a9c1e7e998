"""The partner template catalog (CONTRACT 8, docs/templates.md): signing
keys, signed publishes (canonical JSON + Ed25519, signed here with the
`cryptography` package as a partner would), refusals that store nothing,
409 on a replayed version, search, versions and yank."""
import base64
import copy
import json
import unittest
import urllib.parse
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mfidentity import Platform, api


def canonical(doc):
    """The reference canonical JSON of docs/templates.md: sorted keys (code
    point order is UTF-8 byte order), no whitespace, UTF-8 as is, integers
    only."""
    def check(v, path):
        if isinstance(v, float):
            raise ValueError(f"non-integer number at {path}")
        if isinstance(v, dict):
            for k, x in v.items():
                check(x, path + "/" + k.replace("~", "~0").replace("/", "~1"))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                check(x, f"{path}/{i}")
    check(doc, "")
    return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")


# the vectors of tests/unit/test_canon.c, as Python values
VECTORS = [
    ({}, b"{}"),
    ({"b": 1, "a": [True, False, None]}, b'{"a":[true,false,null],"b":1}'),
    ({"z": {"y": 1, "x": 2}, "A": 0}, b'{"A":0,"z":{"x":2,"y":1}}'),
    ({"\u20ac": 3, "\u00e9": 2, "z": 1, "\U0001F600": 4},
     b'{"z":1,"\xc3\xa9":2,"\xe2\x82\xac":3,"\xf0\x9f\x98\x80":4}'),
    (["a/b", "\u00e9", "\u007f"], b'["a/b","\xc3\xa9","\x7f"]'),
    (['q"b\\s\n\r\t\b\f\u0001\u001f\u001f'], b'["q\\"b\\\\s\\n\\r\\t\\b\\f\\u0001\\u001f\\u001f"]'),
    ([0, -0, 12, -9223372036854775808, 9223372036854775807], b"[0,0,12,-9223372036854775808,9223372036854775807]"),
]

WORKFLOW = {"trigger": {"event": "m365.user.created"},
            "steps": [{"id": "greet", "type": "transform",
                       "output": {"who": "params.greeting", "name": "input.user.name"}}]}


def template(name="onboard-user", version="1.0.0", **kw):
    t = {"name": name, "version": version, "description": "Onboards a Microsoft 365 user",
         "tags": ["m365", "onboarding"],
         "parameters": {"greeting": {"type": "string", "default": "Hello", "description": "the salutation"},
                        "seats": {"type": "integer", "minimum": 1, "maximum": 500, "required": True},
                        "tier": {"type": "string", "enum": ["basic", "pro"], "default": "basic"}},
         "workflow": WORKFLOW,
         "messages": {"welcome": "Welcome to {{ brand.display_name }}, {{ input.user.name }} \u00e9/\u2028"},
         "connectors": [{"name": "m365", "kind": "http"}]}
    t.update(kw)
    return t


class Signer:
    def __init__(self):
        self.key = Ed25519PrivateKey.generate()
        raw = self.key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.public = base64.b64encode(raw).decode()
        self.id = None

    def sign(self, doc, key_id=None):
        d = dict(doc)
        d["key_id"] = key_id or self.id
        d.pop("signature", None)
        d["signature"] = base64.b64encode(self.key.sign(canonical(d))).decode()
        return d


class TemplatesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = p = Platform()
        cls.partner = p.create_tenant("partner", "acme-tpl")
        cls.other = p.create_tenant("partner", "other-tpl")
        cls.msp = p.create_tenant("msp", "msp-tpl")
        cls.ptok = p.token(cls.partner["id"], ["partner_admin"])
        cls.otok = p.token(cls.other["id"], ["partner_admin"])
        cls.mtok = p.token(cls.msp["id"], ["msp_admin"])
        cls.signer = Signer()
        r = cls.post_key(cls.partner["id"], cls.ptok, cls.signer.public)
        assert r.status == 201, r.body
        cls.signer.id = r.json()["id"]

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    @classmethod
    def post_key(cls, tid, tok, pub):
        return api(cls.p.port, "POST", f"/v1/tenants/{tid}/signing-keys", tok, {"public_key": pub})

    def publish(self, doc, tok=None, tid=None):
        return api(self.p.port, "POST", f"/v1/tenants/{tid or self.partner['id']}/templates", tok or self.ptok, doc)

    def count(self, name):
        return int(self.p.pg.psql(f"SELECT count(*) FROM platform.templates WHERE name = '{name}'"))

    def problem(self, r, status, code):
        self.assertEqual((r.status, r.json()["code"]), (status, code), r.body)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/problem+json"))
        return r.json()

    def test_canonical_vectors(self):
        for value, want in VECTORS:
            self.assertEqual(canonical(value), want)
        with self.assertRaises(ValueError):
            canonical({"a": [1.5]})

    def test_signing_keys(self):
        s = Signer()
        r = self.post_key(self.partner["id"], self.ptok, s.public)
        self.assertEqual(r.status, 201, r.body)
        k = r.json()
        self.assertEqual((k["public_key"], k["state"]), (s.public, "active"))
        uuid.UUID(k["id"])
        r = api(self.p.port, "GET", f"/v1/tenants/{self.partner['id']}/signing-keys", self.ptok)
        self.assertIn(k["id"], [x["id"] for x in r.json()["items"]])
        # not 32 bytes, not base64, missing
        for body, _ in ((base64.b64encode(b"x" * 31).decode(), 0), ("!!", 0)):
            e = self.problem(self.post_key(self.partner["id"], self.ptok, body), 400, "validation_failed")
            self.assertEqual(e["errors"][0]["path"], "/public_key")
        # another partner's key is not this partner's
        r = api(self.p.port, "POST", f"/v1/tenants/{self.other['id']}/signing-keys/{k['id']}/revoke", self.otok)
        self.assertEqual(r.status, 404, r.body)
        r = api(self.p.port, "POST", f"/v1/tenants/{self.partner['id']}/signing-keys/{k['id']}/revoke", self.ptok)
        self.assertEqual((r.status, r.json()["state"]), (200, "revoked"), r.body)
        self.assertIsNotNone(r.json()["revoked_at"])
        # a revoked key verifies nothing new
        e = self.problem(self.publish(s.sign(template(name="by-revoked"), k["id"])), 400, "key_revoked")
        self.assertIn(k["id"], e["detail"])
        self.assertEqual(self.count("by-revoked"), 0)
        audit = self.p.pg.psql("SELECT string_agg(action, ',' ORDER BY id) FROM platform.audit_events "
                               f"WHERE target = '{k['id']}'")
        self.assertEqual(audit, "signing_key.create,signing_key.revoke")

    def test_publish_and_replay(self):
        doc = self.signer.sign(template(name="good-one"))
        r = self.publish(doc)
        self.assertEqual(r.status, 201, r.body)
        b = r.json()
        self.assertEqual((b["id"], b["version"], b["yanked"]), ("acme-tpl/good-one", "1.0.0", False))
        self.assertEqual(self.p.pg.psql("SELECT count(*) FROM platform.audit_events WHERE action = "
                                        "'template.publish' AND target = 'acme-tpl/good-one'"), "1")
        # the same version again, even re-signed with other content
        r = self.publish(self.signer.sign(template(name="good-one", description="changed")))
        self.problem(r, 409, "version_exists")
        self.assertEqual(self.count("good-one"), 1)
        # the stored document verifies again from what the catalog returns
        r = api(self.p.port, "GET", "/v1/catalog/templates/acme-tpl/good-one/versions/1.0.0", self.mtok)
        self.assertEqual(r.status, 200, r.body)
        d = r.json()["document"]
        sig = base64.b64decode(d["signature"])
        self.signer.key.public_key().verify(sig, canonical({k: v for k, v in d.items() if k != "signature"}))

    def test_bad_signatures_store_nothing(self):
        doc = self.signer.sign(template(name="tampered"))
        t = copy.deepcopy(doc)
        t["workflow"]["steps"][0]["output"]["who"] = "params.tier"
        self.problem(self.publish(t), 400, "bad_signature")
        t = dict(doc, signature=base64.b64encode(b"\0" * 64).decode())
        self.problem(self.publish(t), 400, "bad_signature")
        t = dict(doc, signature="not base64")
        self.problem(self.publish(t), 400, "bad_signature")
        # signed by a key the server never saw, under this partner's key id
        self.problem(self.publish(Signer().sign(template(name="tampered"), self.signer.id)), 400, "bad_signature")
        # an unknown key id; another partner's key id
        e = self.problem(self.publish(self.signer.sign(template(name="tampered"), str(uuid.uuid4()))), 400,
                         "unknown_key")
        self.assertEqual(e["errors"][0]["path"], "/key_id")
        self.problem(self.publish(self.signer.sign(template(name="tampered")), self.otok, self.other["id"]), 400,
                     "unknown_key")
        # changed after signing into something invalid: the shape is checked first
        t = self.signer.sign(template(name="tampered"))
        t["parameters"]["greeting"]["default"] = 1.5
        e = self.problem(self.publish(t), 400, "validation_failed")
        self.assertEqual(e["errors"][0]["path"], "/parameters/greeting/default")
        self.assertEqual(self.count("tampered"), 0)

    def test_non_integer_number(self):
        t = template(name="reals")
        t["parameters"]["ratio"] = {"type": "number", "default": 0.5}
        d = dict(t, key_id=self.signer.id, signature=base64.b64encode(b"\0" * 64).decode())
        e = self.problem(self.publish(d), 400, "non_integer_number")
        self.assertEqual(e["errors"][0]["path"], "/parameters/ratio/default")
        self.assertEqual(self.count("reals"), 0)

    def test_validation_paths(self):
        t = template(name="Bad_Name", version="1.0", description="d" * 2001, tags=["ok", "Not OK"] + ["x"] * 9,
                     parameters={"9lives": {"type": "string"},
                                 "a": {"type": "float"},
                                 "b": {"type": "integer", "minimum": 10, "maximum": 1, "pattern": "x"},
                                 "c": {"type": "string", "enum": ["x", 2], "default": "y", "size": 1},
                                 "d": {"type": "string", "pattern": "([", "required": "yes"},
                                 "e": {"type": "integer", "minimum": 0, "maximum": 9, "default": 10},
                                 "f": {"required": True}},
                     messages={"ok": "{{ brand.name", "n": 3},
                     connectors=[{"name": "m365"}, "x"],
                     workflow={"steps": []}, extra=1)
        r = self.publish(self.signer.sign(t))
        e = self.problem(r, 400, "validation_failed")
        paths = {x["path"] for x in e["errors"]}
        for want in ("/name", "/version", "/description", "/tags", "/parameters/9lives", "/parameters/a/type",
                     "/parameters/b/minimum", "/parameters/b/pattern", "/parameters/c/size", "/parameters/c/enum/1",
                     "/parameters/c/default", "/parameters/d/pattern", "/parameters/d/required",
                     "/parameters/e/default", "/parameters/f/type", "/messages/ok", "/messages/n",
                     "/connectors/0/kind", "/connectors/1", "/extra"):
            self.assertIn(want, paths, e["errors"])
        self.assertTrue(any(p.startswith("/workflow") for p in paths), e["errors"])
        r = self.publish(self.signer.sign(template(name="tags", tags=["Not OK"])))
        self.assertEqual(self.problem(r, 400, "validation_failed")["errors"][0]["path"], "/tags/0")
        for v in ("01.0.0", "1.0.0+build", "1.0.0-", "1.0.0-01", "v1.0.0"):
            r = self.publish(self.signer.sign(template(name="semver", version=v)))
            self.assertEqual(self.problem(r, 400, "validation_failed")["errors"][0]["path"], "/version", v)
        self.assertEqual(self.count("semver"), 0)

    def test_non_partners_cannot_publish(self):
        doc = self.signer.sign(template(name="nope"))
        r = self.publish(doc, self.mtok, self.msp["id"])
        self.assertEqual(r.status, 404, r.body)
        r = api(self.p.port, "POST", f"/v1/tenants/{self.msp['id']}/signing-keys", self.mtok,
                {"public_key": self.signer.public})
        self.assertEqual(r.status, 404, r.body)
        # another partner's admin does not reach this partner
        self.assertEqual(self.publish(doc, self.otok).status, 404)
        # the platform admin reaches it but does not sign for it
        self.assertEqual(self.publish(doc, self.p.admin_token).status, 403)
        self.assertEqual(self.count("nope"), 0)

    def test_search_versions_yank(self):
        for v in ("1.0.0", "1.2.0", "1.10.0", "2.0.0-beta.1"):
            r = self.publish(self.signer.sign(template(name="patcher", version=v, tags=["patching", "windows"],
                                                       description="Applies Windows patches 100%")))
            self.assertEqual(r.status, 201, r.body)
        r = self.publish(self.signer.sign(template(name="backup-check", description="Checks backups",
                                                   tags=["backup"])))
        self.assertEqual(r.status, 201, r.body)

        def cat(q=None, **kw):
            qs = urllib.parse.urlencode(dict(kw, **({"q": q} if q is not None else {})))
            r = api(self.p.port, "GET", "/v1/catalog/templates" + ("?" + qs if qs else ""), self.mtok)
            self.assertEqual(r.status, 200, r.body)
            return r.json()

        items = {i["id"]: i for i in cat()["items"]}
        self.assertEqual(items["acme-tpl/patcher"]["latest_version"], "1.10.0")  # releases first, 10 > 2
        self.assertEqual(set(cat("WINDOWS")["items"][0]["tags"]), {"patching", "windows"})
        self.assertEqual([i["id"] for i in cat("windows")["items"]], ["acme-tpl/patcher"])
        self.assertEqual([i["id"] for i in cat("backups")["items"]], ["acme-tpl/backup-check"])
        self.assertEqual([i["id"] for i in cat("100%")["items"]], ["acme-tpl/patcher"])
        self.assertEqual(cat("1_0")["items"], [])  # _ and % are literal
        self.assertEqual(cat("nothing-like-this")["items"], [])
        # paging
        page = cat(limit=1)
        self.assertEqual(len(page["items"]), 1)
        self.assertIsNotNone(page["next_cursor"])
        nxt = cat(limit=1, cursor=page["next_cursor"])
        self.assertGreater(nxt["items"][0]["id"], page["items"][0]["id"])
        r = api(self.p.port, "GET", "/v1/catalog/templates?cursor=%21%21", self.mtok)
        self.problem(r, 400, "validation_failed")
        # versions, newest first, releases before pre-releases
        r = api(self.p.port, "GET", "/v1/catalog/templates/acme-tpl/patcher", self.ptok)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual([v["version"] for v in r.json()["versions"]], ["1.10.0", "1.2.0", "1.0.0", "2.0.0-beta.1"])
        self.assertEqual(api(self.p.port, "GET", "/v1/catalog/templates/acme-tpl/none", self.mtok).status, 404)
        # yank the latest: the catalog falls back, the version stays readable
        y = f"/v1/tenants/{self.partner['id']}/templates/patcher/versions/1.10.0/yank"
        r = api(self.p.port, "POST", y, self.ptok)
        self.assertEqual((r.status, r.json()["yanked"]), (200, True), r.body)
        self.assertEqual(api(self.p.port, "POST", y, self.otok).status, 404)
        self.assertEqual(api(self.p.port, "POST", y.replace("1.10.0", "9.9.9"), self.ptok).status, 404)
        items = {i["id"]: i for i in cat()["items"]}
        self.assertEqual(items["acme-tpl/patcher"]["latest_version"], "1.2.0")
        vs = api(self.p.port, "GET", "/v1/catalog/templates/acme-tpl/patcher", self.mtok).json()
        self.assertEqual(vs["latest_version"], "1.2.0")
        self.assertTrue(next(v for v in vs["versions"] if v["version"] == "1.10.0")["yanked"])
        r = api(self.p.port, "GET", "/v1/catalog/templates/acme-tpl/patcher/versions/1.10.0", self.mtok)
        self.assertEqual((r.status, r.json()["yanked"]), (200, True))
        self.assertEqual(self.p.pg.psql("SELECT count(*) FROM platform.audit_events WHERE action = 'template.yank'"),
                         "1")
        # every version yanked: gone from the catalog
        r = api(self.p.port, "POST", f"/v1/tenants/{self.partner['id']}/templates/backup-check/versions/1.0.0/yank",
                self.ptok)
        self.assertEqual(r.status, 200)
        self.assertNotIn("acme-tpl/backup-check", [i["id"] for i in cat()["items"]])

    def test_catalog_readers(self):
        c = self.p.create_client(self.msp["id"], "cli-tpl")
        tok = self.p.token(c["id"], ["client_admin"])
        self.assertEqual(api(self.p.port, "GET", "/v1/catalog/templates", tok).status, 403)
        for t in (self.p.admin_token, self.ptok, self.mtok):
            self.assertEqual(api(self.p.port, "GET", "/v1/catalog/templates", t).status, 200)
        self.assertEqual(api(self.p.port, "GET", "/v1/catalog/templates").status, 401)


if __name__ == "__main__":
    unittest.main(verbosity=2)
