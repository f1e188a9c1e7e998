"""Identity helpers for the integration tests: a migrated, bootstrapped
platform served by the real binary, OAuth tokens, tenant set-up, and JWTs
built by hand (with python3-cryptography) for the hostile-token tests."""
import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
import urllib.parse

from mfharness import BIN, PgCluster, Server, _tmpdir, request, run_migrate, write_config

MASTER_KEY = base64.b64encode(os.urandom(32)).decode()


def b64u(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64u_dec(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def bootstrap(pg, master_key=MASTER_KEY):
    d = _tmpdir("mspflow-cfg-")
    cfg = os.path.join(d, "boot.conf")
    write_config(cfg, {"database_url": pg.conninfo, "master_key": master_key})
    r = subprocess.run([BIN, "bootstrap", "--config", cfg], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError("bootstrap failed: " + r.stderr)
    return json.loads(r.stdout)


def api(port, method, path, token=None, body=None, headers=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = "Bearer " + token
    return request(port, method, path, body=body, headers=h)


def get_token(port, client_id, secret, how="form"):
    if how == "json":
        return request(port, "POST", "/oauth/token", body={
            "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    if how == "basic":
        cred = base64.b64encode(f"{urllib.parse.quote(client_id)}:{urllib.parse.quote(secret)}".encode()).decode()
        return request(port, "POST", "/oauth/token", body=b"grant_type=client_credentials",
                       headers={"Authorization": "Basic " + cred,
                                "Content-Type": "application/x-www-form-urlencoded"})
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id,
                                   "client_secret": secret}).encode()
    return request(port, "POST", "/oauth/token", body=form,
                   headers={"Content-Type": "application/x-www-form-urlencoded"})


def token_for(port, client_id, secret):
    r = get_token(port, client_id, secret)
    if r.status != 200:
        raise AssertionError(f"token: {r.status} {r.body!r}")
    return r.json()["access_token"]


class Platform:
    """PostgreSQL + migrate + bootstrap + one or more servers on it."""

    def __init__(self, config=None, servers=1, binary=None, pg=None):
        self.pg = pg or PgCluster()
        m = run_migrate(self.pg)
        if m.returncode != 0:
            raise RuntimeError("migrate failed: " + m.stderr)
        self.admin = bootstrap(self.pg)
        self.config = {"master_key": MASTER_KEY, "auth_cache_ttl_ms": 1000}
        self.config.update(config or {})
        self.servers = [Server(self.pg, config=self.config, binary=binary) for _ in range(servers)]
        self.port = self.servers[0].port
        self.admin_token = token_for(self.port, self.admin["client_id"], self.admin["client_secret"])

    def add_server(self, config=None):
        c = dict(self.config)
        c.update(config or {})
        s = Server(self.pg, config=c)
        self.servers.append(s)
        return s

    def close(self):
        rcs = [s.stop() for s in self.servers]
        self.pg.cleanup()
        return rcs

    # ---- set-up helpers (asserting) ----

    def create_tenant(self, kind, slug, token=None, port=None):
        r = api(port or self.port, "POST", "/v1/tenants", token or self.admin_token,
                {"kind": kind, "name": slug.title(), "slug": slug})
        if r.status != 201:
            raise AssertionError(f"create {kind}: {r.status} {r.body!r}")
        return r.json()

    def create_client(self, msp_id, slug, token=None, port=None):
        r = api(port or self.port, "POST", f"/v1/tenants/{msp_id}/clients", token or self.admin_token,
                {"name": slug.title(), "slug": slug})
        if r.status != 201:
            raise AssertionError(f"create client: {r.status} {r.body!r}")
        return r.json()

    def api_client(self, tenant_id, roles=None, token=None, port=None):
        body = {"name": "test client"}
        if roles is not None:
            body["roles"] = roles
        r = api(port or self.port, "POST", f"/v1/tenants/{tenant_id}/api-clients", token or self.admin_token, body)
        if r.status != 201:
            raise AssertionError(f"api client: {r.status} {r.body!r}")
        return r.json()

    def token(self, tenant_id, roles=None, port=None):
        c = self.api_client(tenant_id, roles, port=port)
        return token_for(port or self.port, c["client_id"], c["client_secret"])


# ---- hand-made JWTs ----

def sign_es256(private_key, header, claims):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    h = b64u(json.dumps(header, separators=(",", ":")) if isinstance(header, dict) else header)
    c = b64u(json.dumps(claims, separators=(",", ":")) if isinstance(claims, dict) else claims)
    der = private_key.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    r, s = utils.decode_dss_signature(der)
    return f"{h}.{c}.{b64u(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def sign_hs256(secret, header, claims):
    h = b64u(json.dumps(header, separators=(",", ":")) if isinstance(header, dict) else header)
    c = b64u(json.dumps(claims, separators=(",", ":")) if isinstance(claims, dict) else claims)
    mac = hmac.new(secret, f"{h}.{c}".encode(), hashlib.sha256).digest()
    return f"{h}.{c}.{b64u(mac)}"


def verify_es256(jwk, token):
    """Checks a token against a JWKS entry with a standard implementation."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    x = int.from_bytes(b64u_dec(jwk["x"]), "big")
    y = int.from_bytes(b64u_dec(jwk["y"]), "big")
    pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    h, c, s = token.split(".")
    sig = b64u_dec(s)
    der = utils.encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    pub.verify(der, f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    return json.loads(b64u_dec(c))


def wait_until(pred, timeout=10, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return pred()
