"""Hostile tokens against the real server: every malformed, forged, expired
or confused token is refused with 401 (431 when the header itself is too
big), the server stays up, and no log line carries the token.  An external
issuer whose keys the test holds makes the perturbations precise: the
untouched token is accepted, so each refusal is due to the one change.
Also: a flood of junk tokens from one address meets the pre-authentication
limit (429) without costing a signature check each."""
import base64
import json
import os
import socket
import time
import unittest

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mfharness import Server, _tmpdir, request
from mfidentity import Platform, api, b64u, b64u_dec, sign_es256, sign_hs256

ISS = "https://idp.test.example"
HS_ISS = "https://hs.test.example"
AUD = "urn:tenancy:api"
HS_SECRET = os.urandom(32)


class TokenTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key = ec.generate_private_key(ec.SECP256R1())
        cls.other_key = ec.generate_private_key(ec.SECP256R1())
        pub_pem = cls.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        cls.pub_pem = pub_pem
        d = _tmpdir("mspflow-iss-")
        path = os.path.join(d, "issuers.json")
        with open(path, "w") as f:
            json.dump([{"issuer": ISS, "keys": [{"kid": "ext-1", "alg": "ES256", "pem": pub_pem}]},
                       {"issuer": HS_ISS, "keys": [{"kid": "hs-1", "alg": "HS256",
                                                    "secret": base64.b64encode(HS_SECRET).decode()}]}], f)
        cls.p = Platform(config={"jwt_issuers_file": path, "auth_ip_rate": 100000, "auth_ip_burst": 100000})
        cls.msp = cls.p.create_tenant("msp", "tok-msp")
        cls.path = f"/v1/tenants/{cls.msp['id']}"

    @classmethod
    def tearDownClass(cls):
        assert set(cls.p.close()) == {0}

    def claims(self, **over):
        now = int(time.time())
        c = {"iss": ISS, "aud": AUD, "sub": "ext-user-1", "tenant_id": self.msp["id"], "roles": ["msp_admin"],
             "iat": now, "nbf": now, "exp": now + 600, "jti": os.urandom(8).hex()}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def header(self, **over):
        h = {"alg": "ES256", "typ": "JWT", "kid": "ext-1"}
        h.update(over)
        return {k: v for k, v in h.items() if v is not None}

    def good(self, **over):
        return sign_es256(self.key, self.header(), self.claims(**over))

    def status(self, token):
        return api(self.p.port, "GET", self.path, token).status

    def test_the_reference_token_is_accepted(self):
        self.assertEqual(self.status(self.good()), 200)
        self.assertEqual(self.status(sign_hs256(HS_SECRET, self.header(alg="HS256", kid="hs-1"),
                                                self.claims(iss=HS_ISS))), 200)

    def hostile(self):
        now = int(time.time())
        g = self.good()
        h, c, s = g.split(".")
        plat = self.p.admin_token
        ph, pc, ps = plat.split(".")
        pkid = json.loads(b64u_dec(ph))["kid"]
        jwks = request(self.p.port, "GET", "/.well-known/jwks.json").json()["keys"]
        from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicNumbers, SECP256R1
        jk = next(k for k in jwks if k["kid"] == pkid)
        plat_pub = EllipticCurvePublicNumbers(int.from_bytes(b64u_dec(jk["x"]), "big"),
                                              int.from_bytes(b64u_dec(jk["y"]), "big"),
                                              SECP256R1()).public_key()
        plat_pem = plat_pub.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
        plat_claims = json.loads(b64u_dec(pc))
        cases = {
            "alg none": f"{b64u(json.dumps(self.header(alg='none')))}.{c}.",
            "alg none with sig": f"{b64u(json.dumps(self.header(alg='none')))}.{c}.{s}",
            "alg NoNe": f"{b64u(json.dumps(self.header(alg='NoNe')))}.{c}.{s}",
            "alg es256": sign_es256(self.key, self.header(alg="es256"), self.claims()),
            "alg Es256": sign_es256(self.key, self.header(alg="Es256"), self.claims()),
            "alg empty": sign_es256(self.key, self.header(alg=""), self.claims()),
            "hs256 with the issuer's public key": sign_hs256(self.pub_pem.encode(), self.header(alg="HS256"),
                                                             self.claims()),
            "hs256 with the platform public key": sign_hs256(plat_pem, {"alg": "HS256", "typ": "JWT", "kid": pkid},
                                                             plat_claims),
            "hs256 with a wrong secret": sign_hs256(os.urandom(32), self.header(alg="HS256", kid="hs-1"),
                                                    self.claims(iss=HS_ISS)),
            "hs384 under an HS256 key": f"{b64u(json.dumps(self.header(alg='HS384', kid='hs-1')))}.{c}.{s}",
            "unknown kid": sign_es256(self.key, self.header(kid="nope"), self.claims()),
            "path-like kid": sign_es256(self.key, self.header(kid="../../../etc/passwd"), self.claims()),
            "kid with NUL": sign_es256(self.key, self.header(kid="ext-1\u0000"), self.claims()),
            "another key, same kid": sign_es256(self.other_key, self.header(), self.claims()),
            "expired": self.good(exp=now - 120, iat=now - 700, nbf=now - 700),
            "future nbf": self.good(nbf=now + 300),
            "future iat": self.good(iat=now + 300),
            "wrong aud": self.good(aud="urn:other"),
            "aud list without ours": self.good(aud=["a", "b"]),
            "wrong iss": self.good(iss="https://evil.example"),
            "no exp": self.good(exp=None),
            "exp as string": self.good(exp=str(now + 600)),
            "exp as float": self.good(exp=now + 600.5),
            "roles as string": self.good(roles="msp_admin"),
            "roles with a number": self.good(roles=["msp_admin", 7]),
            "tenant_id a number": self.good(tenant_id=12),
            "tenant_id not a uuid": self.good(tenant_id="acme"),
            "sub empty": self.good(sub=""),
            "duplicate claims": sign_es256(self.key, self.header(),
                                           json.dumps(self.claims())[:-1] + f', "tenant_id": "{self.msp["id"]}"}}'),
            "duplicate header keys": sign_es256(self.key, '{"alg":"ES256","kid":"ext-1","alg":"ES256"}', self.claims()),
            "crit header": sign_es256(self.key, self.header(crit=["exp"]), self.claims()),
            "jku header": sign_es256(self.key, self.header(jku="https://evil.example/jwks"), self.claims()),
            "jwk header": sign_es256(self.key, self.header(jwk={"kty": "EC"}), self.claims()),
            "truncated": g[:-5],
            "two segments": f"{h}.{c}",
            "four segments": f"{g}.{s}",
            "padding": g + "==",
            "bad base64": g[:-3] + "!!!",
            "platform sig on external claims": f"{h}.{c}.{ps}",
            "tenant that does not exist": self.good(tenant_id="00000000-0000-4000-8000-000000000001"),
            "platform token, claims swapped": f"{ph}.{b64u(json.dumps(dict(plat_claims, tenant_id=self.msp['id'])))}.{ps}",
            "8 KiB plus one": "a" * 8193,
        }
        return cases

    def test_hostile_tokens_are_401(self):
        cases = self.hostile()
        for name, tok in cases.items():
            with self.subTest(name):
                r = api(self.p.port, "GET", self.path, tok)
                self.assertEqual(r.status, 401, (name, r.body[:200]))
                self.assertEqual(r.headers.get("www-authenticate"), 'Bearer error="invalid_token"')
                self.assertEqual(r.json()["code"], "invalid_token")
        self.assertEqual(request(self.p.port, "GET", "/healthz").status, 200)
        time.sleep(0.3)
        out = self.p.servers[0].output()
        for name, tok in cases.items():
            sig = tok.split(".")[-1] or tok
            if len(sig) >= 16:
                self.assertNotIn(sig, out, name)

    def test_missing_and_malformed_headers(self):
        for h in ({}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}, {"Authorization": "Bearer "},
                  {"Authorization": "bearer x.y.z"}):
            r = request(self.p.port, "GET", self.path, headers=h)
            self.assertEqual(r.status, 401, h)
            self.assertEqual(r.headers["www-authenticate"], 'Bearer error="invalid_token"')

    def raw_get(self, token_len):
        s = socket.create_connection(("127.0.0.1", self.p.port), timeout=10)
        head = f"GET {self.path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".encode()
        out = b""
        try:
            s.sendall(head)
            chunk = b"A" * 65536
            sent = 0
            while sent < token_len:
                n = min(len(chunk), token_len - sent)
                s.sendall(chunk[:n])
                sent += n
            s.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while True:
                d = s.recv(65536)
                if not d:
                    break
                out += d
        except (ConnectionResetError, socket.timeout):
            pass
        s.close()
        return out

    def test_oversized_tokens(self):
        for n in (64 * 1024, 20 * 1024 * 1024):
            out = self.raw_get(n)
            self.assertTrue(out.startswith(b"HTTP/1.1 431"), (n, out[:100]))
        self.assertEqual(request(self.p.port, "GET", "/healthz").status, 200)
        # between the JWT cap and the header cap: 401
        self.assertEqual(self.status("x" * 12000), 401)

    def test_external_issuer_claims_count(self):
        # an external token reaches what its tenant_id and roles allow, no more
        other = self.p.create_tenant("msp", "tok-other")
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{other['id']}", self.good()).status, 404)
        tok = self.good(roles=["platform_admin"])   # a role its tenant's kind cannot hold grants nothing
        self.assertEqual(api(self.p.port, "GET", f"/v1/tenants/{other['id']}", tok).status, 404)
        self.assertEqual(api(self.p.port, "POST", "/v1/tenants", tok, {"kind": "msp", "name": "x", "slug": "tok-x"}).status,
                         403)

    def test_junk_flood_meets_the_per_ip_limit(self):
        # one worker: the token cache is per worker
        srv = self.p.add_server({"auth_ip_rate": 20, "auth_ip_burst": 40, "workers": 1})
        good = self.good()
        self.assertEqual(api(srv.port, "GET", self.path, good).status, 200)   # verified once, then cached
        statuses = []
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        for i in range(300):
            conn.request("GET", self.path, headers={"Authorization": "Bearer " + good[:-8] + f"{i:08d}"})
            r = conn.getresponse()
            r.read()
            statuses.append(r.status)
        conn.close()
        self.assertIn(429, statuses)
        self.assertLessEqual(statuses.count(401), 40 + 20 * 10)   # burst + rate over at most ~10 s
        self.assertEqual(set(statuses), {401, 429})
        # a token already verified is served from the cache: no check, no limit
        self.assertEqual(api(srv.port, "GET", self.path, good).status, 200)
        import re
        metrics = request(srv.admin_port, "GET", "/metrics").body.decode()
        limited = int(re.search(r'mspflow_auth_tokens_total\{outcome="ip_limited"\} (\d+)', metrics).group(1))
        refused = int(re.search(r'mspflow_auth_tokens_total\{outcome="refused"\} (\d+)', metrics).group(1))
        self.assertEqual(limited, statuses.count(429))
        self.assertEqual(refused, statuses.count(401))
        m = srv.wait_log(lambda o: o.get("msg") == "token refused", timeout=2)
        self.assertIsNotNone(m)
        self.assertNotIn(good[-20:], srv.output())


if __name__ == "__main__":
    unittest.main(verbosity=2)
