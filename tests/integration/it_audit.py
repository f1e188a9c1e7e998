"""The tamper-evident audit log (docs/audit.md): every tenant's entries form a
hash chain, linked after commit by a chainer (the server's, continuously, or
`mspflow audit chain`), whoever writes them; writers never wait for each
other, not even across tenants in opposite orders; a late commit is chained
by a later pass; GET /v1/tenants/{t}/audit pages the chain then the unchained
tail, with filters and isolation; `mspflow audit verify` catches an edited, a
deleted and a reordered entry (tampered as the database owner with the
append-only trigger disabled) and entries nobody chains; pruning past
retention seals a checkpoint and verification starts there; the application
cannot update or delete entries."""
import decimal
import hashlib
import json
import os
import subprocess
import threading
import time
import unittest
import urllib.parse

from mfharness import BIN, _tmpdir, write_config
from mfidentity import Platform, api, wait_until

ZERO = "0" * 64


class Session:
    """One psql session kept open, so a transaction can stay open across
    steps of a test."""

    def __init__(self, pg):
        self.p = subprocess.Popen([os.path.join(pg.bindir, "psql"), "-X", "-q", "-At", "-h", pg.sock,
                                   "-p", str(pg.port), "-U", "mspflow", "-d", "mspflow"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
        self.n = 0

    def send(self, sql):
        """Sends a statement and a marker; wait() reads up to the marker."""
        self.n += 1
        self.p.stdin.write(sql.rstrip().rstrip(";") + ";\n\\echo @@done" + str(self.n) + "\n")
        self.p.stdin.flush()

    def wait(self, timeout=10):
        out, marker = [], "@@done" + str(self.n)
        result = {}

        def read():
            for line in self.p.stdout:
                if line.strip() == marker:
                    result["ok"] = True
                    return
                out.append(line.rstrip("\n"))

        th = threading.Thread(target=read, daemon=True)
        th.start()
        th.join(timeout)
        if not result:
            raise AssertionError(f"psql session: no answer within {timeout} s: {out}")
        if any(x.startswith("ERROR") for x in out):
            raise RuntimeError("\n".join(out))
        return "\n".join(out)

    def run(self, sql, timeout=10):
        self.send(sql)
        return self.wait(timeout)

    def close(self):
        """Ends the session (an open transaction rolls back); again: no-op."""
        if self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(10)
        self.p.stdout.close()


def jsonb_text(v):
    """PostgreSQL's canonical jsonb text: keys by length then bytes, ", " and ": "."""
    if isinstance(v, dict):
        keys = sorted(v, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(json.dumps(k, ensure_ascii=False) + ": " + jsonb_text(v[k]) for k in keys) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(jsonb_text(x) for x in v) + "]"
    if isinstance(v, decimal.Decimal):
        return str(v)
    return json.dumps(v, ensure_ascii=False)


def entry_hash(tenant, e):
    """docs/audit.md's encoding, computed from an API answer alone."""
    fields = ["mspflow.audit.v1", tenant, str(e["seq"]), e["at"], e["actor"], e["action"], e["target"],
              jsonb_text(e["detail"]), e["prev_hash"]]
    msg = b"".join(str(len(f.encode())).encode() + b":" + f.encode() + b"\n" for f in fields)
    return hashlib.sha256(msg).hexdigest()


class AuditTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.p = Platform()
        cls.msp = cls.p.create_tenant("msp", "aud-msp")
        cls.client = cls.p.create_client(cls.msp["id"], "aud-client")
        cls.other = cls.p.create_tenant("msp", "aud-other")
        cls.msp_tok = cls.p.token(cls.msp["id"])
        cls.client_tok = cls.p.token(cls.client["id"])
        cls.other_tok = cls.p.token(cls.other["id"])
        cfg = os.path.join(_tmpdir("mspflow-cfg-"), "audit.conf")
        write_config(cfg, {"database_url": cls.p.pg.conninfo})
        cls.cfg = cfg

    @classmethod
    def tearDownClass(cls):
        assert cls.p.close() == [0]

    # ---- helpers ----

    def sql(self, q):
        return self.p.pg.psql(q)

    def owner(self, q):
        """As the database owner with the append-only triggers off: what an
        attacker with the owner's password could do."""
        return self.sql("BEGIN; ALTER TABLE platform.audit_events DISABLE TRIGGER USER; " + q +
                        "; ALTER TABLE platform.audit_events ENABLE TRIGGER USER; COMMIT")

    def verify(self, tenant, *extra):
        r = subprocess.run([BIN, "audit", "verify", "--tenant", tenant, "--config", self.cfg, *extra],
                           capture_output=True, text=True, timeout=60)
        lines = [json.loads(x) for x in r.stdout.splitlines() if x.strip()]
        return r.returncode, lines, r.stderr

    def chain(self, tenant):
        """`mspflow audit chain`: links what is committed now; how many."""
        r = subprocess.run([BIN, "audit", "chain", "--tenant", tenant, "--config", self.cfg],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        out = json.loads(r.stdout)
        self.assertEqual(out["tenant"], tenant)
        return out["chained"]

    def insert(self, t, action, extra=""):
        self.sql(f"INSERT INTO platform.audit_events (tenant_id, actor, action{', at' if extra else ''}) "
                 f"VALUES ('{t}', 's:tester', '{action}'{', ' + extra if extra else ''})")

    def unchained(self, t):
        return int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}' AND hash IS NULL"))

    def session(self):
        s = Session(self.p.pg)
        self.addCleanup(s.close)    # a test that fails leaves no transaction open
        return s

    def chain_lock(self, t):
        """A session holding the tenant's chain lock: no chainer (the
        server's included) links its entries until it closes."""
        s = self.session()
        s.run(f"SELECT pg_advisory_lock(hashtextextended('mspflow.audit.chain:{t}', 0))")
        return s

    def new_tenant(self, slug, n=6):
        t = self.p.create_tenant("msp", slug)["id"]
        for i in range(n):
            self.sql("INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) VALUES "
                     f"('{t}', 's:tester', 'thing.changed', 'thing:{i}', '{{\"n\": {i}, \"note\": \"line\\nbreak\"}}')")
        self.chain(t)
        self.assertEqual(self.unchained(t), 0)
        return t

    def page(self, tenant, tok, **q):
        qs = urllib.parse.urlencode(q)
        return api(self.p.port, "GET", f"/v1/tenants/{tenant}/audit" + (f"?{qs}" if qs else ""), tok)

    def all_entries(self, tenant, tok, **q):
        items, cursor = [], None
        while True:
            args = dict(q, limit=3)
            if cursor:
                args["cursor"] = cursor
            r = self.page(tenant, tok, **args)
            self.assertEqual(r.status, 200, r.body)
            b = json.loads(r.body, parse_float=decimal.Decimal)
            self.assertLessEqual(len(b["items"]), 3)
            items += b["items"]
            cursor = b["next_cursor"]
            if not cursor:
                return items

    # ---- the chain and the API ----

    def test_api_pages_a_chain_anyone_can_recompute(self):
        t = self.client["id"]
        for i in range(5):
            r = api(self.p.port, "PUT", f"/v1/tenants/{t}/policy", self.client_tok,
                    {"retention": {"runs": f"P{30 + i}D"}})
            self.assertEqual(r.status, 200, r.body)
        self.chain(t)
        items = self.all_entries(t, self.msp_tok)   # the client's msp admin reads it
        self.assertGreaterEqual(len(items), 6)
        self.assertEqual([e["seq"] for e in items], list(range(1, len(items) + 1)))
        prev = ZERO
        for e in items:
            self.assertEqual(set(e), {"seq", "at", "actor", "action", "target", "detail", "prev_hash", "hash"})
            self.assertEqual(e["prev_hash"], prev)
            self.assertEqual(entry_hash(t, e), e["hash"], e)
            prev = e["hash"]
        # the database's own hash function agrees with the encoding
        self.assertEqual(self.sql(
            "SELECT encode(platform.audit_hash('6f1c2f0e-3b7a-4c55-9d2e-0a1b2c3d4e5f', 1, "
            "'2024-05-01T12:00:00Z', 's:alice', 'policy.update', 'policy', "
            "'{\"after\": {\"retention\": {\"audit\": \"P30D\"}}}', "
            f"'\\x{ZERO}'), 'hex')"),
            "bbb90c1b21f1016f88af595a5bb0ab310b23c9b9f5077cc0107b401590829350")
        # filters
        upd = self.all_entries(t, self.client_tok, action="policy.update")
        self.assertEqual(len(upd), 5)
        self.assertTrue(all(e["action"] == "policy.update" for e in upd))
        actor = upd[0]["actor"]
        self.assertTrue(all(e["actor"] == actor for e in self.all_entries(t, self.client_tok, actor=actor)))
        self.assertEqual(self.all_entries(t, self.client_tok, actor="s:nobody"), [])
        frm, to = items[2]["at"], items[4]["at"]
        window = self.all_entries(t, self.client_tok, **{"from": frm, "to": to})
        self.assertEqual([e["seq"] for e in window], [3, 4])
        for bad in ({"from": "yesterday"}, {"to": "2024-02-31T00:00:00Z"}, {"cursor": "zz"}, {"limit": "0"},
                    {"action": ""}):
            r = self.page(t, self.client_tok, **bad)
            self.assertEqual(r.status, 400, (bad, r.body))
            self.assertEqual(r.json()["code"], "validation_failed")

    def test_who_reads_the_audit_log(self):
        t = self.client["id"]
        self.assertEqual(self.page(t, self.p.admin_token).status, 200)       # platform admin
        self.assertEqual(self.page(t, self.msp_tok).status, 200)             # its msp's admin
        self.assertEqual(self.page(t, self.client_tok).status, 200)          # its own admin
        self.assertEqual(self.page(t, self.other_tok).status, 404)           # another msp: isolation
        self.assertEqual(self.page(self.msp["id"], self.client_tok).status, 404)   # a client, its msp
        user = self.p.token(t, ["client_user"])
        self.assertEqual(self.page(t, user).status, 403)
        op = self.p.token(self.msp["id"], ["msp_operator"])
        self.assertEqual(self.page(t, op).status, 403)
        r = api(self.p.port, "GET", f"/v1/tenants/{t}/access/audit", self.msp_tok)
        self.assertEqual(r.status, 204)

    def test_concurrent_writers_never_wait_and_keep_one_chain(self):
        t = self.p.create_tenant("msp", "aud-busy")["id"]
        tok = self.p.token(t)
        errors = []
        # an audited transaction of the tenant stays open the whole time:
        # linking at insert would make every other writer wait for it
        held = self.session()
        held.run(f"BEGIN; INSERT INTO platform.audit_events (tenant_id, actor, action) VALUES ('{t}', 's:held', 'held')")

        def http_writer(i):
            for j in range(3):
                r = api(self.p.port, "PUT", f"/v1/tenants/{t}/policy", tok,
                        {"retention": {"runs": f"P{10 + i * 3 + j}D"}})
                if r.status != 200:
                    errors.append(r.body)

        def sql_writer(i):
            # two entries per transaction, with a pause between them
            try:
                self.sql("BEGIN; INSERT INTO platform.audit_events (tenant_id, actor, action) "
                         f"VALUES ('{t}', 's:sql', 'sql.a'); SELECT pg_sleep(0.02); "
                         "INSERT INTO platform.audit_events (tenant_id, actor, action) "
                         f"VALUES ('{t}', 's:sql', 'sql.b'); COMMIT")
            except RuntimeError as e:
                errors.append(str(e))

        before = int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"))
        threads = [threading.Thread(target=http_writer, args=(i,)) for i in range(20)]
        threads += [threading.Thread(target=sql_writer, args=(i,)) for i in range(20)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        self.assertFalse(any(th.is_alive() for th in threads), "writers waited for the open transaction")
        self.assertEqual(errors, [])
        held.run("COMMIT")
        held.close()
        n = int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"))
        self.assertEqual(n - before, 20 * 3 + 20 * 2 + 1)
        self.chain(t)
        self.assertEqual(self.unchained(t), 0)
        self.assertEqual(self.sql(f"SELECT count(DISTINCT prev_hash) = count(*) AND max(seq) = count(*) "
                                  f"FROM platform.audit_events WHERE tenant_id = '{t}'"), "t")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 0, (lines, err))
        self.assertEqual((lines[0]["entries"], lines[0]["last_seq"], lines[0]["unchained"]), (n, n, 0))

    def test_opposite_orders_across_tenants_do_not_deadlock(self):
        # what an engine batch does: audit rows of several tenants in one
        # transaction, in whatever order its runs come
        x = self.p.create_tenant("msp", "aud-dl-x")["id"]
        y = self.p.create_tenant("msp", "aud-dl-y")["id"]
        errors = []

        def tx(first, second):
            try:
                self.sql("BEGIN; INSERT INTO platform.audit_events (tenant_id, actor, action) "
                         f"VALUES ('{first}', 'engine', 'run.created'); SELECT pg_sleep(0.5); "
                         "INSERT INTO platform.audit_events (tenant_id, actor, action) "
                         f"VALUES ('{second}', 'engine', 'run.created'); COMMIT")
            except RuntimeError as e:
                errors.append(str(e))

        for _ in range(2):
            threads = [threading.Thread(target=tx, args=(x, y)), threading.Thread(target=tx, args=(y, x))]
            for th in threads:
                th.start()
            for th in threads:
                th.join(30)
        self.assertEqual(errors, [])
        for t in (x, y):
            rc, lines, err = self.verify(t)
            self.assertEqual(rc, 0, (lines, err))
            self.assertGreaterEqual(lines[0]["entries"], 4)

    def test_late_commit_is_chained_by_a_later_pass(self):
        t = self.new_tenant("aud-late", n=2)
        k = int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"))
        late = self.session()
        late.run(f"BEGIN; INSERT INTO platform.audit_events (tenant_id, actor, action) VALUES ('{t}', 's:late', 'late')")
        self.insert(t, "after.1")
        self.insert(t, "after.2")
        self.chain(t)
        # the later rows are chained, the open one is nobody's to see yet
        self.assertEqual(self.sql(f"SELECT string_agg(action, ',' ORDER BY seq) FROM platform.audit_events "
                                  f"WHERE tenant_id = '{t}' AND seq > {k}"), "after.1,after.2")
        self.assertEqual(self.verify(t)[0], 0)
        late.run("COMMIT")
        late.close()
        self.chain(t)     # (or the server's chainer got it first)
        self.assertEqual(self.unchained(t), 0)
        # chain order is the chainer's: the late entry's id is lower, its seq higher
        self.assertEqual(self.sql(f"SELECT string_agg(action, ',' ORDER BY seq) FROM platform.audit_events "
                                  f"WHERE tenant_id = '{t}' AND seq > {k}"), "after.1,after.2,late")
        self.assertEqual(self.sql(f"SELECT (SELECT id FROM platform.audit_events WHERE tenant_id = '{t}' "
                                  f"AND action = 'late') < (SELECT id FROM platform.audit_events "
                                  f"WHERE tenant_id = '{t}' AND action = 'after.1')"), "t")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 0, (lines, err))
        self.assertEqual((lines[0]["entries"], lines[0]["unchained"]), (k + 3, 0))

    def test_server_chains_by_itself(self):
        t = self.p.create_tenant("msp", "aud-server")["id"]
        self.insert(t, "by.server")
        self.assertTrue(wait_until(lambda: self.unchained(t) == 0, timeout=15), "the server did not chain")
        self.assertEqual(self.sql(f"SELECT seq FROM platform.audit_events WHERE tenant_id = '{t}' "
                                  f"AND action = 'by.server'"), self.sql(
            f"SELECT seq FROM platform.audit_heads WHERE tenant_id = '{t}'"))
        rc, lines, err = self.verify(t, "--no-chain")
        self.assertEqual(rc, 0, (lines, err))

    def test_unchained_tail_and_stale_entries(self):
        t = self.new_tenant("aud-tail", n=4)
        tok = self.p.token(t)       # (audited too)
        self.chain(t)
        k = int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"))
        lock = self.chain_lock(t)      # no chainer gets to this tenant: as if none ran
        try:
            for i in range(4):
                self.insert(t, f"tail.{i}")
            # the API: the chain by seq, then the tail by id, links null
            first = self.page(t, tok, limit=k + 1)
            self.assertEqual(first.status, 200, first.body)
            b = json.loads(first.body, parse_float=decimal.Decimal)
            self.assertEqual([e["seq"] for e in b["items"]], list(range(1, k + 1)) + [None])
            self.assertEqual(b["items"][k]["action"], "tail.0")
            self.assertEqual((b["items"][k]["prev_hash"], b["items"][k]["hash"]), (None, None))
            mid = self.page(t, tok, limit=2, cursor=b["next_cursor"])
            b2 = json.loads(mid.body)
            self.assertEqual([e["action"] for e in b2["items"]], ["tail.1", "tail.2"])
            # verify without a chain pass: intact, with the tail counted
            rc, lines, err = self.verify(t, "--no-chain")
            self.assertEqual(rc, 0, (lines, err))
            self.assertEqual((lines[0]["entries"], lines[0]["unchained"]), (k, 4))
            self.assertGreaterEqual(lines[0]["oldest_unchained_age_s"], 0)
            # an entry unchained for longer than the threshold: the chainer is not running
            self.insert(t, "tail.old", "now() - interval '10 minutes'")
            rc, lines, err = self.verify(t, "--no-chain")
            self.assertEqual(rc, 1, (lines, err))
            self.assertEqual([(x["problem"], x["unchained"]) for x in lines], [("stale_unchained", 5)])
            self.assertGreater(lines[0]["oldest_unchained_age_s"], 590)
            rc, lines, err = self.verify(t, "--no-chain", "--max-unchained-age", "3600")
            self.assertEqual(rc, 0, (lines, err))
            self.assertEqual(subprocess.run([BIN, "audit", "verify", "--tenant", t, "--max-unchained-age", "soon",
                                             "--config", self.cfg], capture_output=True).returncode, 2)
        finally:
            lock.close()
        rc, lines, err = self.verify(t)    # chains first
        self.assertEqual(rc, 0, (lines, err))
        self.assertEqual((lines[0]["entries"], lines[0]["unchained"], lines[0]["oldest_unchained_age_s"]),
                         (k + 5, 0, None))
        # the reader that stopped in the tail goes on: what was chained since
        # with a higher id, nothing twice
        rest = []
        cursor = b2["next_cursor"]
        while cursor:
            r = json.loads(self.page(t, tok, limit=2, cursor=cursor).body)
            rest += r["items"]
            cursor = r["next_cursor"]
        self.assertEqual([(e["action"], e["seq"]) for e in rest], [("tail.3", k + 4), ("tail.old", k + 5)])
        # read afresh, the whole chain recomputes
        prev = ZERO
        for e in self.all_entries(t, tok):
            self.assertEqual((e["prev_hash"], entry_hash(t, e)), (prev, e["hash"]))
            prev = e["hash"]

    # ---- tampering ----

    def test_intact_chain_exits_0_with_a_summary(self):
        t = self.new_tenant("aud-intact")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(lines), 1)
        s = lines[0]
        self.assertEqual((s["tenant"], s["status"], s["first_seq"], s["checkpoint_seq"]), (t, "intact", 1, 0))
        self.assertEqual(s["last_seq"], s["entries"])
        self.assertEqual(s["head_hash"], self.sql(
            f"SELECT encode(hash, 'hex') FROM platform.audit_events WHERE tenant_id = '{t}' ORDER BY seq DESC LIMIT 1"))
        rc, lines, _ = self.verify("aud-intact")     # by slug too
        self.assertEqual(rc, 0)
        r = subprocess.run([BIN, "audit", "verify", "--all", "--config", self.cfg], capture_output=True, text=True,
                           timeout=60)
        self.assertIn(t, r.stdout)
        self.assertEqual(subprocess.run([BIN, "audit", "verify", "--config", self.cfg],
                                        capture_output=True).returncode, 2)
        self.assertEqual(subprocess.run([BIN, "audit", "verify", "--tenant", "no-such-slug", "--config", self.cfg],
                                        capture_output=True).returncode, 2)

    def test_edited_entry(self):
        t = self.new_tenant("aud-edit")
        self.owner(f"UPDATE platform.audit_events SET detail = '{{\"n\": 99}}' WHERE tenant_id = '{t}' AND seq = 3")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 1, err)
        self.assertEqual([(x["problem"], x["seq"]) for x in lines], [("edited", 3)])

    def test_deleted_entry(self):
        t = self.new_tenant("aud-del")
        self.owner(f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND seq = 4")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 1, err)
        self.assertEqual([(x["problem"], x["from_seq"], x["to_seq"]) for x in lines], [("deleted", 4, 4)])
        # the newest entry gone: the head still knows the chain was longer
        t = self.new_tenant("aud-del-end")
        self.owner(f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND seq = (SELECT max(seq) "
                   f"FROM platform.audit_events WHERE tenant_id = '{t}')")
        rc, lines, _ = self.verify(t)
        self.assertEqual(rc, 1)
        self.assertEqual([x["problem"] for x in lines], ["deleted"])

    def test_reordered_entries(self):
        # two entries swap what they say
        t = self.new_tenant("aud-swap")
        cols = "at, actor, action, target, detail"
        self.owner(f"UPDATE platform.audit_events a SET ({cols}) = (SELECT {cols} FROM platform.audit_events b "
                   f"WHERE b.tenant_id = a.tenant_id AND b.seq = 7 - a.seq) "
                   f"WHERE a.tenant_id = '{t}' AND a.seq IN (2, 5)")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 1, err)
        self.assertEqual(sorted((x["problem"], x["seq"], x["holds_entry_of_seq"]) for x in lines),
                         [("reordered", 2, 5), ("reordered", 5, 2)])
        # two whole entries change places in the order
        t = self.new_tenant("aud-move")
        self.owner(f"UPDATE platform.audit_events SET seq = seq + 1000 WHERE tenant_id = '{t}' AND seq IN (3, 4); "
                   f"UPDATE platform.audit_events SET seq = CASE seq WHEN 1003 THEN 4 ELSE 3 END "
                   f"WHERE tenant_id = '{t}' AND seq IN (1003, 1004)")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 1, err)
        self.assertTrue(lines and all(x["problem"] == "reordered" for x in lines), lines)
        self.assertIn({"seq": 3, "moved_from_seq": 4}, [{k: x[k] for k in ("seq", "moved_from_seq")}
                                                         for x in lines if "moved_from_seq" in x])

    def test_application_cannot_update_or_delete(self):
        t = self.new_tenant("aud-ro")
        lock = self.chain_lock(t)
        try:
            self.insert(t, "unchained")
            for q, why in ((f"INSERT INTO platform.audit_events (tenant_id, actor, action, seq, prev_hash, hash) "
                            f"VALUES ('{t}', 'a', 'b', 99, '\\x{ZERO}', '\\x{ZERO}')", "must be NULL"),
                           # the one-time fill, but with the content changed
                           (f"UPDATE platform.audit_events SET seq = 99, prev_hash = '\\x{ZERO}', "
                            f"hash = '\\x{ZERO}', actor = 's:mallory' WHERE tenant_id = '{t}' AND hash IS NULL",
                            "append-only"),
                           # a second fill of a chained entry
                           (f"UPDATE platform.audit_events SET hash = '\\x{'ab' * 32}' "
                            f"WHERE tenant_id = '{t}' AND seq = 1", "append-only"),
                           (f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND hash IS NULL", "sealing")):
                with self.assertRaises(RuntimeError, msg=q) as cm:
                    self.sql(q)
                self.assertIn(why, str(cm.exception))
        finally:
            lock.close()
        self.chain(t)
        # a checkpoint cannot seal a hash the chain does not hold: the
        # entry's own hash is taken
        self.sql(f"INSERT INTO platform.audit_checkpoints (tenant_id, seq, hash, at, pruned) "
                 f"VALUES ('{t}', 2, '\\x{'ab' * 32}', now(), 0)")
        self.assertEqual(self.sql(f"SELECT hash = (SELECT hash FROM platform.audit_events WHERE tenant_id = '{t}' "
                                  f"AND seq = 2) FROM platform.audit_checkpoints WHERE tenant_id = '{t}'"), "t")
        for q, why in ((f"UPDATE platform.audit_events SET actor = 'x' WHERE tenant_id = '{t}'", "append-only"),
                       (f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}'", "sealing"),
                       (f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND seq = 3", "sealing"),
                       ("TRUNCATE platform.audit_events", "append-only"),
                       (f"UPDATE platform.audit_checkpoints SET pruned = 9 WHERE tenant_id = '{t}'", "append-only"),
                       (f"DELETE FROM platform.audit_checkpoints WHERE tenant_id = '{t}'", "append-only"),
                       (f"INSERT INTO platform.audit_checkpoints (tenant_id, seq, hash, at, pruned) "
                        f"VALUES ('{t}', 1, '\\x{ZERO}', now(), 0)", "already sealed")):
            with self.assertRaises(RuntimeError, msg=q) as cm:
                self.sql(q)
            self.assertIn(why, str(cm.exception))
        # sealed entries may go now, and verification starts after the seal
        self.sql(f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND seq <= 2")
        self.assertEqual(self.unchained(t), 0)
        rc, lines, _ = self.verify(t)
        self.assertEqual(rc, 0, lines)
        self.assertEqual((lines[0]["checkpoint_seq"], lines[0]["first_seq"]), (2, 3))

    # ---- retention ----

    def backdate(self, t, upto):
        """Moves entries 1..upto three days back and rewrites the chain as
        it would have been written then (as the owner)."""
        self.owner(
            f"UPDATE platform.audit_events SET at = at - interval '3 days' WHERE tenant_id = '{t}' AND seq <= {upto}; "
            "DO $$ DECLARE e record; prev bytea := '\\x" + ZERO + "'; h bytea; BEGIN "
            f"FOR e IN SELECT * FROM platform.audit_events WHERE tenant_id = '{t}' AND seq IS NOT NULL ORDER BY seq LOOP "
            "h := platform.audit_hash(e.tenant_id, e.seq, e.at, e.actor, e.action, e.target, e.detail, prev); "
            "UPDATE platform.audit_events SET prev_hash = prev, hash = h WHERE id = e.id; prev := h; END LOOP; "
            f"UPDATE platform.audit_heads SET hash = prev WHERE tenant_id = '{t}'; END $$")

    def test_retention_prunes_by_sealing(self):
        t = self.new_tenant("aud-ret", n=8)
        tok = self.p.token(t)
        r = api(self.p.port, "PUT", f"/v1/tenants/{t}/policy", tok, {"retention": {"audit": "P1D"}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.sql(f"SELECT platform.audit_retention('{t}')"), "1 day")
        self.backdate(t, 5)
        self.assertEqual(self.verify(t)[0], 0)
        r = subprocess.run([BIN, "audit", "prune", "--tenant", t, "--config", self.cfg], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout), {"tenant": t, "pruned": 5})
        self.assertEqual(self.sql(f"SELECT seq || ' ' || pruned FROM platform.audit_checkpoints "
                                  f"WHERE tenant_id = '{t}'"), "5 5")
        self.assertEqual(self.sql(f"SELECT min(seq) FROM platform.audit_events WHERE tenant_id = '{t}'"), "6")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 0, (lines, err))
        self.assertEqual((lines[0]["checkpoint_seq"], lines[0]["first_seq"]), (5, 6))
        # pruning again has nothing to do; new entries still link on
        r = subprocess.run([BIN, "audit", "prune", "--tenant", t, "--config", self.cfg], capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(json.loads(r.stdout)["pruned"], 0)
        self.sql(f"INSERT INTO platform.audit_events (tenant_id, actor, action) VALUES ('{t}', 's:x', 'after.prune')")
        self.assertEqual(self.verify(t)[0], 0)
        # the API answers what is left
        items = self.all_entries(t, tok)
        self.assertEqual(items[0]["seq"], 6)
        self.assertEqual(items[0]["prev_hash"], self.sql(
            f"SELECT encode(hash, 'hex') FROM platform.audit_checkpoints WHERE tenant_id = '{t}'"))
        # an entry edited after the seal is still caught
        self.owner(f"UPDATE platform.audit_events SET actor = 's:mallory' WHERE tenant_id = '{t}' AND seq = 7")
        rc, lines, _ = self.verify(t)
        self.assertEqual(rc, 1)
        self.assertEqual([(x["problem"], x["seq"]) for x in lines], [("edited", 7)])
        # and so is deleting the first entry after the checkpoint
        self.owner(f"DELETE FROM platform.audit_events WHERE tenant_id = '{t}' AND seq = 6")
        rc, lines, _ = self.verify(t)
        self.assertIn(("deleted", 6), [(x["problem"], x.get("from_seq")) for x in lines])

    def test_server_maintenance_prunes_due_tenants(self):
        # a client inherits its msp's shorter retention
        msp = self.p.create_tenant("msp", "aud-ret-msp")
        client = self.p.create_client(msp["id"], "aud-ret-client")["id"]
        r = api(self.p.port, "PUT", f"/v1/tenants/{msp['id']}/policy", self.p.admin_token,
                {"retention": {"audit": "P2D"}})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.sql(f"SELECT platform.audit_retention('{client}')"), "2 days")
        for i in range(4):
            self.sql("INSERT INTO platform.audit_events (tenant_id, actor, action) "
                     f"VALUES ('{client}', 's:x', 'old.{i}')")
        self.chain(client)
        upto = int(self.sql(f"SELECT max(seq) FROM platform.audit_events WHERE tenant_id = '{client}'")) - 1
        self.backdate(client, upto)
        self.assertGreaterEqual(int(self.sql("SELECT platform.audit_prune_due(1000)")), upto)
        self.assertEqual(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{client}'"), "1")
        self.assertEqual(self.verify(client)[0], 0)


if __name__ == "__main__":
    unittest.main()
