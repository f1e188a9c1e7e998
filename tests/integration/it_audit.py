"""The tamper-evident audit log (docs/audit.md): every tenant's entries form a
hash chain linked by the database whoever writes them, also under concurrent
writers; GET /v1/tenants/{t}/audit pages it with filters and isolation;
`mspflow audit verify` catches an edited, a deleted and a reordered entry
(tampered as the database owner with the append-only trigger disabled);
pruning past retention seals a checkpoint and verification starts there; the
application cannot update or delete entries."""
import decimal
import hashlib
import json
import os
import subprocess
import threading
import unittest
import urllib.parse

from mfharness import BIN, _tmpdir, write_config
from mfidentity import Platform, api

ZERO = "0" * 64


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

    def new_tenant(self, slug, n=6):
        t = self.p.create_tenant("msp", slug)["id"]
        for i in range(n):
            self.sql("INSERT INTO platform.audit_events (tenant_id, actor, action, target, detail) VALUES "
                     f"('{t}', 's:tester', 'thing.changed', 'thing:{i}', '{{\"n\": {i}, \"note\": \"line\\nbreak\"}}')")
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

    def test_concurrent_writers_keep_one_chain(self):
        t = self.p.create_tenant("msp", "aud-busy")["id"]
        tok = self.p.token(t)
        errors = []

        def http_writer(i):
            for j in range(3):
                r = api(self.p.port, "PUT", f"/v1/tenants/{t}/policy", tok,
                        {"retention": {"runs": f"P{10 + i * 3 + j}D"}})
                if r.status != 200:
                    errors.append(r.body)

        def sql_writer(i):
            # two entries per transaction, with a pause between them: the
            # head stays locked across the transaction
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
            th.join()
        self.assertEqual(errors, [])
        n = int(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{t}'"))
        self.assertEqual(n - before, 20 * 3 + 20 * 2)
        self.assertEqual(self.sql(f"SELECT count(DISTINCT prev_hash) = count(*) AND max(seq) = count(*) "
                                  f"FROM platform.audit_events WHERE tenant_id = '{t}'"), "t")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 0, (lines, err))
        self.assertEqual(lines[0]["entries"], n)
        self.assertEqual(lines[0]["last_seq"], n)
        # the two entries of one transaction are next to each other
        self.assertEqual(self.sql(
            f"SELECT count(*) FROM platform.audit_events a JOIN platform.audit_events b "
            f"ON b.tenant_id = a.tenant_id AND b.seq = a.seq + 1 "
            f"WHERE a.tenant_id = '{t}' AND a.action = 'sql.a' AND b.action = 'sql.b'"), "20")

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
        self.owner(f"UPDATE platform.audit_events SET seq = -seq WHERE tenant_id = '{t}' AND seq IN (3, 4); "
                   f"UPDATE platform.audit_events SET seq = CASE seq WHEN -3 THEN 4 ELSE 3 END "
                   f"WHERE tenant_id = '{t}' AND seq IN (-3, -4)")
        rc, lines, err = self.verify(t)
        self.assertEqual(rc, 1, err)
        self.assertTrue(lines and all(x["problem"] == "reordered" for x in lines), lines)
        self.assertIn({"seq": 3, "moved_from_seq": 4}, [{k: x[k] for k in ("seq", "moved_from_seq")}
                                                         for x in lines if "moved_from_seq" in x])

    def test_application_cannot_update_or_delete(self):
        t = self.new_tenant("aud-ro")
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
            f"FOR e IN SELECT * FROM platform.audit_events WHERE tenant_id = '{t}' ORDER BY seq LOOP "
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
        upto = int(self.sql(f"SELECT max(seq) FROM platform.audit_events WHERE tenant_id = '{client}'")) - 1
        self.backdate(client, upto)
        self.assertGreaterEqual(int(self.sql("SELECT platform.audit_prune_due(1000)")), upto)
        self.assertEqual(self.sql(f"SELECT count(*) FROM platform.audit_events WHERE tenant_id = '{client}'"), "1")
        self.assertEqual(self.verify(client)[0], 0)


if __name__ == "__main__":
    unittest.main()
