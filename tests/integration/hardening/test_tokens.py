"""Token scopes, the /tokens resource and the per-token rate limit, against the real binary.

Scopes: a client token made with the default scope (own) sees and acts on only the instances,
reservations and reservation sets it created; another's is a 404 of its usual kind, in gets,
deletes, cancels, lists and concurrent (batched) gets alike. An `all` client token and an admin
token see everything; rows with no creator are theirs alone.

/tokens: admin tokens list tokens (never a secret or a hash) and revoke them; the revoked token
is refused within 5 seconds, and the revocation is in the audit trail. Client and driver
tokens get 403 role_not_allowed.

The rate limit (token-rate-limit, token-rate-burst): past the burst a token gets 429
rate_limited with Retry-After and nothing is done; within a window no more than the burst and
the rate pass; another token is not affected; after Retry-After the token works again.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import re
import time
import unittest

from cloudbrain_test import ServiceTestCase, wait_until

TOKEN_LINE = re.compile(r"^generated token: (\d+-[0-9a-f]{32})\n$")


def make_token(service, *options):
    out = service.cli("token", "create", *options, "made by test_tokens")
    m = TOKEN_LINE.match(out.stdout)
    assert m, out.stdout
    return m.group(1)


def token_id(token):
    return int(token.split("-", 1)[0])


class Scopes(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                         "rate-limit": "2000", "max-in-flight": "100"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        svc = cls.service
        cls.a = make_token(svc)  # the default for a new client token: own
        cls.b = make_token(svc, "--scope", "own")
        cls.everything = make_token(svc, "--scope", "all")
        cls.admin = make_token(svc, "--role", "admin")

    def made_by(self, token, tag):
        """An instance, a reservation and a reservation set, all made with `token`."""
        svc = self.service
        tags = {"owner": tag, "shared": "yes"}
        i = svc.request("POST", "/instances", {"provider": "gce", "image": "img", "tags": tags},
                        token=token)
        self.assertEqual(i.status, 201, i)
        r = svc.request("POST", "/reservations",
                        {"provider": "gce", "count": 1, "duration_minutes": 30, "tags": tags},
                        token=token)
        self.assertEqual(r.status, 201, r)
        s = svc.request("POST", "/reservation-sets",
                        {"placements": [{"provider": "gce", "count": 1}], "tags": tags},
                        token=token)
        self.assertEqual(s.status, 201, s)
        return {"instances": i.json()["id"], "reservations": r.json()["id"],
                "reservation-sets": s.json()["id"]}

    def listed(self, token, kind, query=""):
        r = self.service.request("GET", f"/{kind}?limit=1000{query}", token=token)
        self.assertEqual(r.status, 200, r)
        return {x["id"] for x in r.json()[kind.replace("-", "_")]}

    def test_own_tokens_see_only_their_own(self):
        svc = self.service
        mine = self.made_by(self.a, "a")
        theirs = self.made_by(self.b, "b")
        codes = {"instances": "instance_not_found", "reservations": "reservation_not_found",
                 "reservation-sets": "reservation_set_not_found"}
        for kind, code in codes.items():
            with self.subTest(kind=kind):
                self.assertEqual(svc.request("GET", f"/{kind}/{mine[kind]}", token=self.a).status,
                                 200)
                # Another's is not found, exactly as one that does not exist.
                self.assertProblem(svc.request("GET", f"/{kind}/{theirs[kind]}", token=self.a),
                                   404, code)
                self.assertProblem(svc.request("DELETE", f"/{kind}/{theirs[kind]}",
                                               token=self.a), 404, code)
                self.assertProblem(svc.request("GET", f"/{kind}/{mine[kind]}", token=self.b),
                                   404, code)
                # Lists: each sees its own and not the other's.
                self.assertIn(mine[kind], self.listed(self.a, kind))
                self.assertNotIn(theirs[kind], self.listed(self.a, kind))
                self.assertIn(theirs[kind], self.listed(self.b, kind))
                self.assertNotIn(mine[kind], self.listed(self.b, kind))
                self.assertNotIn(theirs[kind], self.listed(self.a, kind, "&tag.owner=b"))
        # Nothing of b's was touched by a's deletes.
        inst = svc.request("GET", f"/instances/{theirs['instances']}", token=self.b).json()
        self.assertNotIn(inst["state"], ("terminating", "terminated"))
        res = svc.request("GET", f"/reservations/{theirs['reservations']}", token=self.b).json()
        self.assertNotIn(res["state"], ("cancelling", "cancelled"))
        rset = svc.request("GET", f"/reservation-sets/{theirs['reservation-sets']}",
                           token=self.b).json()
        self.assertNotIn(rset["state"], ("cancelling", "cancelled"))
        # Cancelling by tag cancels only the caller's own.
        r = svc.request("DELETE", "/reservations?tag.shared=yes", token=self.a)
        self.assertEqual(r.status, 202, r)
        moved = {x["id"] for x in r.json()["reservations"]}
        self.assertNotIn(theirs["reservations"], moved)
        res = svc.request("GET", f"/reservations/{theirs['reservations']}", token=self.b).json()
        self.assertNotIn(res["state"], ("cancelling", "cancelled"))

    def test_usage_covers_only_what_the_token_made(self):
        # GET /usage counts what a client token made, as its lists show it; an `all` token and
        # an admin count both.
        svc = self.service
        run = "u%d" % time.monotonic_ns()
        for token, owner in ((self.a, "a"), (self.b, "b"), (self.b, "b")):
            r = svc.request("POST", "/reservations",
                            {"provider": "gce", "count": 1, "duration_minutes": 30,
                             "tags": {"usage": run, "owner": owner}}, token=token)
            self.assertEqual(r.status, 201, r)
            rid = r.json()["id"]
            wait_until(lambda: svc.request("GET", f"/reservations/{rid}", token=token)
                       .json()["state"] == "active", 30, what="the reservation to be active")
        time.sleep(1.1)  # reserved time to count (the report counts whole microseconds)

        def reservations(token):
            r = svc.request("GET", f"/usage?group_by=&tag.usage={run}", token=token)
            self.assertEqual(r.status, 200, r)
            return r.json()["total"]["reservations"]

        self.assertEqual(reservations(self.a), 1)
        self.assertEqual(reservations(self.b), 2)
        self.assertEqual(reservations(self.everything), 3)
        self.assertEqual(reservations(self.admin), 3)

    def test_a_launch_into_anothers_reservation_is_refused_as_unknown(self):
        svc = self.service
        theirs = self.made_by(self.b, "b4")["reservations"]
        wait_until(lambda: svc.request("GET", f"/reservations/{theirs}", token=self.b)
                   .json()["state"] == "active", 30, what="b's reservation to be active")
        body = {"provider": "gce", "image": "img", "reservation_id": theirs}
        refused = svc.request("POST", "/instances", body, token=self.a)
        self.assertProblem(refused, 422, "reservation_not_found")
        r = svc.request("GET", f"/reservations/{theirs}", token=self.b).json()
        self.assertEqual(r["in_use"], 0)
        launched = svc.request("POST", "/instances", body, token=self.b)
        self.assertEqual(launched.status, 201, launched)
        self.assertEqual(launched.json()["reservation_id"], theirs)

    def test_concurrent_gets_keep_each_callers_scope(self):
        # Concurrent GETs share one query: each caller still gets only what it may see.
        svc = self.service
        mine = self.made_by(self.a, "a2")["instances"]
        theirs = self.made_by(self.b, "b2")["instances"]
        asks = [(tok, iid) for _ in range(10) for tok in (self.a, self.b, self.admin)
                for iid in (mine, theirs)]

        def get(ask):
            tok, iid = ask
            return tok, iid, svc.request("GET", f"/instances/{iid}", token=tok).status

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            results = list(pool.map(get, asks))
        for tok, iid, status in results:
            allowed = tok == self.admin or (tok == self.a) == (iid == mine)
            self.assertEqual(status, 200 if allowed else 404, (tok[:3], iid))

    def test_all_scope_and_admin_tokens_see_everything(self):
        svc = self.service
        mine = self.made_by(self.a, "a3")
        theirs = self.made_by(self.b, "b3")
        for token in (self.everything, self.admin):
            for kind in mine:
                with self.subTest(token=token[:3], kind=kind):
                    seen = self.listed(token, kind)
                    self.assertIn(mine[kind], seen)
                    self.assertIn(theirs[kind], seen)
                    for rid in (mine[kind], theirs[kind]):
                        r = svc.request("GET", f"/{kind}/{rid}", token=token)
                        self.assertEqual(r.status, 200, r)
        # An `all` token may delete another's; an admin token cancels another's set.
        r = svc.request("DELETE", f"/instances/{theirs['instances']}", token=self.everything)
        self.assertEqual(r.status, 202, r)
        r = svc.request("DELETE", f"/reservation-sets/{mine['reservation-sets']}",
                        token=self.admin)
        self.assertEqual(r.status, 202, r)

    def test_rows_without_a_creator_are_for_all_and_admin_tokens(self):
        svc = self.service
        orphan = self.made_by(self.everything, "nobody")
        self.db.query(f"UPDATE instances SET created_by = NULL "
                      f"WHERE id = '{orphan['instances']}'")
        path = f"/instances/{orphan['instances']}"
        self.assertProblem(svc.request("GET", path, token=self.a), 404, "instance_not_found")
        self.assertNotIn(orphan["instances"], self.listed(self.a, "instances"))
        self.assertEqual(svc.request("GET", path, token=self.everything).status, 200)
        self.assertEqual(svc.request("GET", path, token=self.admin).status, 200)

    def test_scope_is_for_client_tokens_and_checked(self):
        svc = self.service
        bad = svc.cli("token", "create", "--scope", "mine", "x", check=False)
        self.assertEqual(bad.returncode, 2, bad)
        self.assertIn("--scope own|all", bad.stderr)
        bad = svc.cli("token", "create", "--role", "driver", "--scope", "all", "x", check=False)
        self.assertEqual(bad.returncode, 2, bad)
        self.assertIn("--scope is for client tokens", bad.stderr)
        listed = svc.cli("token", "list").stdout.splitlines()
        self.assertEqual(listed[0].split("\t"), ["ID", "CREATED", "REVOKED", "ROLE", "SCOPE",
                                                 "DESCRIPTION"])
        scopes = {int(line.split("\t")[0]): line.split("\t")[4] for line in listed[1:]}
        self.assertEqual(scopes[token_id(self.a)], "own")
        self.assertEqual(scopes[token_id(self.everything)], "all")
        self.assertEqual(scopes[token_id(self.admin)], "all")


class TokensResource(ServiceTestCase):
    def test_client_and_driver_tokens_may_not_use_it(self):
        svc = self.service
        tokens = [make_token(svc), make_token(svc, "--scope", "all"),
                  make_token(svc, "--role", "driver")]
        for token in tokens:
            for method, path in (("GET", "/tokens"), ("DELETE", "/tokens/1"),
                                 ("DELETE", f"/tokens/{token_id(tokens[0])}")):
                self.assertProblem(svc.request(method, path, token=token), 403,
                                   "role_not_allowed")
        self.assertEqual(svc.request("GET", "/tokens", auth=False).status, 401)
        # None of that revoked anything.
        self.assertEqual(svc.request("GET", "/instances", token=tokens[0]).status, 200)
        self.assertEqual(self.db.query(
            f"SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL "
            f"AND id IN (1, {token_id(tokens[0])})"), "0")

    def test_an_admin_lists_and_revokes(self):
        svc = self.service
        admin = make_token(svc, "--role", "admin")
        victim = make_token(svc, "--scope", "all")
        self.assertEqual(svc.request("GET", "/instances", token=victim).status, 200)

        r = svc.request("GET", "/tokens?limit=1000", token=admin)
        self.assertEqual(r.status, 200, r)
        page = r.json()
        self.assertIsNone(page["next_before"])
        by_id = {t["id"]: t for t in page["tokens"]}
        self.assertEqual(list(by_id), sorted(by_id, reverse=True))  # newest first
        listed = by_id[token_id(victim)]
        self.assertEqual(set(listed), {"id", "description", "role", "scope", "created_at",
                                       "revoked_at", "last_used_at"})
        self.assertEqual((listed["role"], listed["scope"], listed["revoked_at"]),
                         ("client", "all", None))
        self.assertEqual(listed["description"], "made by test_tokens")
        self.assertNotIn(victim.split("-", 1)[1], r.body)
        # Use is recorded every two seconds or so.
        wait_until(lambda: svc.request("GET", "/tokens", token=admin).json()["tokens"] and
                   {t["id"]: t for t in svc.request("GET", "/tokens", token=admin)
                    .json()["tokens"]}[token_id(victim)]["last_used_at"] is not None,
                   6, interval=0.25, what="last_used_at of a used token")
        # Pages of one, following next_before, reach every token once.
        seen, before = [], ""
        for _ in range(len(by_id) + 1):
            p = svc.request("GET", "/tokens?limit=1" + before, token=admin).json()
            seen += [t["id"] for t in p["tokens"]]
            if p["next_before"] is None:
                break
            before = "&before=%d" % p["next_before"]
        self.assertEqual(seen, list(by_id))
        bad = svc.request("GET", "/tokens?limit=0&color=red", token=admin)
        self.assertProblem(bad, 422)

        r = svc.request("DELETE", f"/tokens/{token_id(victim)}", token=admin,
                        headers={"X-Request-ID": "revoke-victim"})
        revoked_at = time.monotonic()
        self.assertEqual(r.status, 200, r)
        self.assertIsNotNone(r.json()["revoked_at"])
        wait_until(lambda: svc.request("GET", "/instances", token=victim,
                                       timeout=5).status == 401,
                   max(0.1, 5.0 - (time.monotonic() - revoked_at)), interval=0.1,
                   what="the revoked token to be refused")
        again = svc.request("DELETE", f"/tokens/{token_id(victim)}", token=admin)
        self.assertEqual(again.status, 200, again)
        self.assertEqual(again.json()["revoked_at"], r.json()["revoked_at"])
        self.assertProblem(svc.request("DELETE", "/tokens/999999", token=admin), 404,
                           "token_not_found")
        self.assertProblem(svc.request("DELETE", "/tokens/abc", token=admin), 404,
                           "token_not_found")

        events = svc.request("GET", f"/audit?token={token_id(admin)}",
                             token=admin).json()["events"]
        revokes = [(e["action"], e["target"], e["status"], e["outcome"], e["request_id"])
                   for e in reversed(events) if e["action"] == "tokens.revoke"]
        self.assertEqual(revokes[0], ("tokens.revoke", f"/tokens/{token_id(victim)}", 200, "ok",
                                      "revoke-victim"))
        self.assertEqual([x[3] for x in revokes], ["ok", "ok", "token_not_found",
                                                   "token_not_found"])


RATE = 5
BURST = 5


class RateLimit(ServiceTestCase):
    settings = {"token-rate-limit": str(RATE), "token-rate-burst": str(BURST)}

    def test_a_burst_past_the_limit_is_refused_and_does_nothing(self):
        svc = self.service
        token = make_token(svc)
        other = make_token(svc)
        before = int(self.db.query("SELECT count(*) FROM instances"))
        started = time.monotonic()
        answers = [svc.request("POST", "/instances", {"provider": "gce", "image": "img"},
                               token=token) for _ in range(BURST + 6)]
        took = time.monotonic() - started
        created = [a for a in answers if a.status == 201]
        refused = [a for a in answers if a.status == 429]
        self.assertEqual(len(created) + len(refused), len(answers), answers)
        self.assertGreaterEqual(len(created), BURST)
        self.assertLessEqual(len(created), BURST + int(RATE * took) + 1)
        self.assertTrue(refused)
        for r in refused:
            p = self.assertProblem(r, 429, "rate_limited")
            self.assertRegex(r.header("Retry-After"), r"^[1-9][0-9]*$")
            self.assertIn("token-rate-limit", p["detail"])
        # Nothing done for a refused request: no instance, no audit record.
        self.assertEqual(int(self.db.query("SELECT count(*) FROM instances")),
                         before + len(created))
        self.assertEqual(int(self.db.query(
            f"SELECT count(*) FROM audit_events WHERE token_id = {token_id(token)}")),
            len(created))
        # Another token is not affected; the operations routes are not limited.
        self.assertEqual(svc.request("GET", "/instances", token=other).status, 200)
        for path in ("/livez", "/readyz", "/metrics") * 4:
            self.assertEqual(svc.request("GET", path, auth=False).status, 200, path)
        metrics = svc.request("GET", "/metrics", auth=False).body
        m = re.search(r"^cloudbrain_rate_limited_requests_total (\S+)$", metrics, re.M)
        self.assertIsNotNone(m, "the refusals counter is missing")
        self.assertGreaterEqual(float(m.group(1)), len(refused))
        # After Retry-After the token works again.
        time.sleep(int(refused[-1].header("Retry-After")))
        self.assertEqual(svc.request("GET", "/instances", token=token).status, 200)

    def test_within_a_window_no_more_than_the_burst_and_the_rate_pass(self):
        svc = self.service
        token = make_token(svc)
        allowed = refused = 0
        started = time.monotonic()
        for _ in range(3000):  # bounded in count and in time
            if time.monotonic() - started > 2.0:
                break
            status = svc.request("GET", "/instances?limit=1", token=token).status
            self.assertIn(status, (200, 429))
            allowed += status == 200
            refused += status == 429
        took = time.monotonic() - started
        self.assertGreater(refused, 0)
        self.assertGreaterEqual(allowed, BURST + int(RATE * took) - 1)
        self.assertLessEqual(allowed, BURST + int(RATE * took) + 1)


if __name__ == "__main__":
    unittest.main()
