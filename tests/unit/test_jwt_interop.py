"""ES256 tokens interoperate with a standard JOSE implementation.

gw_jwt_sign's tokens must verify with Python's `cryptography` (the JOSE
signature is raw R||S, RFC 7518 3.4, not DER), and tokens Python signs must
verify in gw_jwt_verify.  The C side is tests/unit/jwt_interop.c, whose path
is in MSPFLOW_JWT_INTEROP.  PyJWT, where installed, checks the same tokens
as a complete third-party JWT implementation.
"""
import base64
import json
import os
import subprocess
import tempfile
import unittest

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils

HELPER = os.environ["MSPFLOW_JWT_INTEROP"]
ISS = "https://auth.interop.test"
AUD = "interop-api"
NOW = 1700000100


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def es256_raw(key, signing_input: bytes) -> bytes:
    r, s = utils.decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def claims(**over):
    c = {"iss": ISS, "aud": AUD, "sub": "py-user", "tenant_id": "0e8f4a52-1b2c-4d3e-9f00-aabbccddeeff",
         "roles": ["viewer"], "iat": NOW - 50, "nbf": NOW - 50, "exp": NOW + 500, "jti": "py-jti-1"}
    c.update(over)
    return c


class CSignsPythonVerifies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        out = subprocess.run([HELPER, "sign", "64"], check=True, capture_output=True, text=True).stdout
        doc = json.loads(out)
        cls.pub = serialization.load_pem_public_key(doc["public_pem"].encode())
        cls.pem = doc["public_pem"]
        cls.tokens = doc["tokens"]

    def test_signatures_verify_as_raw_r_s(self):
        self.assertEqual(len(self.tokens), 64)
        for tok in self.tokens:
            h, p, s = tok.split(".")
            sig = unb64u(s)
            self.assertEqual(len(sig), 64, "ES256 JOSE signatures are 64 raw bytes")
            self.assertEqual(b64u(sig), s, "canonical base64url, no padding")
            der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
            self.pub.verify(der, f"{h}.{p}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if bad

    def test_header_and_claims(self):
        h, p, _ = self.tokens[3].split(".")
        self.assertEqual(json.loads(unb64u(h)), {"alg": "ES256", "typ": "JWT", "kid": "c1"})
        c = json.loads(unb64u(p))
        self.assertEqual(c["iss"], ISS)
        self.assertEqual(c["aud"], AUD)
        self.assertEqual(c["sub"], "user-3")
        self.assertEqual(c["tenant_id"], "0e8f4a52-1b2c-4d3e-9f00-aabbccddeeff")
        self.assertEqual(c["roles"], ["tenant_admin", "viewer"])
        self.assertEqual((c["iat"], c["nbf"], c["exp"]), (1700000000, 1700000000, 1700000600))
        self.assertTrue(isinstance(c["jti"], str) and len(c["jti"]) == 22)
        self.assertEqual(len({json.loads(unb64u(t.split(".")[1]))["jti"] for t in self.tokens}), 64,
                         "random jtis differ")

    def test_tampered_payload_fails(self):
        h, p, s = self.tokens[0].split(".")
        c = json.loads(unb64u(p))
        c["roles"] = ["superuser"]
        sig = unb64u(s)
        der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        with self.assertRaises(Exception):
            self.pub.verify(der, f"{h}.{b64u(json.dumps(c).encode())}".encode(), ec.ECDSA(hashes.SHA256()))

    def test_pyjwt_accepts(self):
        try:
            import jwt  # PyJWT
        except ImportError:
            self.skipTest("PyJWT is not installed for this python")
        for tok in self.tokens[:8]:
            c = jwt.decode(tok, self.pem, algorithms=["ES256"], audience=AUD, issuer=ISS,
                           options={"verify_exp": False})
            self.assertTrue(c["sub"].startswith("user-"))


class PythonSignsCVerifies(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.key = ec.generate_private_key(ec.SECP256R1())
        cls.tmp = tempfile.TemporaryDirectory()
        cls.pemfile = os.path.join(cls.tmp.name, "pub.pem")
        with open(cls.pemfile, "wb") as f:
            f.write(cls.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def token(self, header=None, payload=None, der=False):
        header = header or {"alg": "ES256", "typ": "JWT", "kid": "py1"}
        si = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(payload or claims()).encode())}"
        if der:
            sig = self.key.sign(si.encode(), ec.ECDSA(hashes.SHA256()))
        else:
            sig = es256_raw(self.key, si.encode())
        return f"{si}.{b64u(sig)}"

    def verify(self, tok):
        p = subprocess.run([HELPER, "verify", self.pemfile, str(NOW)], input=tok, capture_output=True, text=True)
        self.assertIn(p.returncode, (0, 1), p.stderr)
        return p.returncode, json.loads(p.stdout)

    def test_python_token_verifies(self):
        for i in range(32):
            rc, out = self.verify(self.token(payload=claims(sub=f"py-user-{i}")))
            self.assertEqual(rc, 0, out)
            self.assertEqual(out["sub"], f"py-user-{i}")
        self.assertEqual(out["tenant_id"], "0e8f4a52-1b2c-4d3e-9f00-aabbccddeeff")
        self.assertEqual(out["roles"], ["viewer"])
        self.assertEqual((out["iat"], out["exp"], out["issuer"]), (NOW - 50, NOW + 500, 0))

    def test_at_jwt_verifies(self):
        rc, out = self.verify(self.token(header={"alg": "ES256", "typ": "at+jwt", "kid": "py1"}))
        self.assertEqual(rc, 0, out)

    def test_der_signature_is_refused(self):
        rc, out = self.verify(self.token(der=True))
        self.assertEqual((rc, out), (1, {"error": "bad_signature"}))

    def test_tampered_is_refused(self):
        h, p, s = self.token().split(".")
        forged = b64u(json.dumps(claims(roles=["admin"])).encode())
        rc, out = self.verify(f"{h}.{forged}.{s}")
        self.assertEqual((rc, out), (1, {"error": "bad_signature"}))

    def test_other_key_is_refused(self):
        other = ec.generate_private_key(ec.SECP256R1())
        si = f"{b64u(json.dumps({'alg': 'ES256', 'kid': 'py1'}).encode())}.{b64u(json.dumps(claims()).encode())}"
        rc, out = self.verify(f"{si}.{b64u(es256_raw(other, si.encode()))}")
        self.assertEqual((rc, out), (1, {"error": "bad_signature"}))

    def test_expired_is_refused(self):
        rc, out = self.verify(self.token(payload=claims(exp=NOW - 1)))
        self.assertEqual((rc, out), (1, {"error": "expired"}))

    def test_pyjwt_token_verifies(self):
        try:
            import jwt  # PyJWT
        except ImportError:
            self.skipTest("PyJWT is not installed for this python")
        tok = jwt.encode(claims(), self.key, algorithm="ES256", headers={"kid": "py1"})
        rc, out = self.verify(tok)
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
