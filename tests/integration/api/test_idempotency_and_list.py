"""Idempotency-Key on POST /instances, and GET /instances: filters and cursor paging."""

import concurrent.futures
import threading
import unittest
import uuid

from cloudbrain_test import ServiceTestCase

BODY = {"provider": "gce", "image": "image-2016-01-01", "instance_type": "standard",
        "public_ssh_key": "ssh-rsa AAAA test"}


class IdempotencyTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                         "rate-limit": "2000", "max-in-flight": "100"}}

    def post(self, body, key, token=None):
        return self.service.request("POST", "/instances", body, token=token,
                                    headers={"Idempotency-Key": key})

    def test_same_key_same_body_replays_the_first_response(self):
        key = "same-" + uuid.uuid4().hex
        before = self.db.count_rows()
        first = self.post(BODY, key)
        self.assertEqual(first.status, 201, first)
        after_first = self.db.count_rows()
        self.assertEqual(after_first["instances"], before["instances"] + 1)
        self.assertEqual(after_first["jobs"], before["jobs"] + 1)
        self.assertEqual(after_first["idempotency_keys"], before["idempotency_keys"] + 1)
        for _ in range(3):
            again = self.post(BODY, key)
            self.assertEqual(again.status, 201, again)
            self.assertEqual(again.json()["id"], first.json()["id"])
            self.assertEqual(again.json(), first.json(), "the replay is not the first response")
            self.assertEqual(again.header("Location"), first.header("Location"))
            self.assertEqual(self.db.count_rows(), after_first, "a replay stored something")
        # Once the instance has moved on, the replay is still the first response (same id).
        self.wait_state(first.json()["id"], "running")
        again = self.post(BODY, key)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.json()["id"], first.json()["id"])
        self.assertEqual(self.db.count_rows()["instances"], after_first["instances"])

    def test_same_key_other_body_is_422(self):
        key = "other-" + uuid.uuid4().hex
        first = self.post(BODY, key)
        self.assertEqual(first.status, 201, first)
        before = self.db.count_rows()
        for body in (dict(BODY, image="image-2016-02-02"), dict(BODY, instance_type="premium"),
                     {k: v for k, v in BODY.items() if k != "public_ssh_key"}):
            with self.subTest(body=body):
                r = self.post(body, key)
                self.assertProblem(r, 422, "idempotency_key_reused")
                self.assertEqual(self.db.count_rows(), before)
        # The original still replays.
        r = self.post(BODY, key)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["id"], first.json()["id"])

    def test_a_key_older_than_24_hours_is_forgotten(self):
        key = "old-" + uuid.uuid4().hex
        first = self.post(BODY, key)
        self.assertEqual(first.status, 201, first)
        self.db.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                      f"WHERE key = '{key}'")
        # The same body again creates anew; so would another body.
        second = self.post(BODY, key)
        self.assertEqual(second.status, 201, second)
        self.assertNotEqual(second.json()["id"], first.json()["id"])
        self.assertEqual(self.post(BODY, key).json()["id"], second.json()["id"])
        self.db.query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours' "
                      f"WHERE key = '{key}'")
        third = self.post(dict(BODY, image="another"), key)
        self.assertEqual(third.status, 201, third)
        self.assertNotIn(third.json()["id"], (first.json()["id"], second.json()["id"]))

    def test_a_rejected_request_does_not_use_up_the_key(self):
        key = "rejected-" + uuid.uuid4().hex
        r = self.post(dict(BODY, provider="nowhere"), key)
        self.assertProblem(r, 422, "unknown_provider")
        first = self.post(BODY, key)
        self.assertEqual(first.status, 201, first)
        again = self.post(BODY, key)
        self.assertEqual(again.status, 201, again)
        self.assertEqual(again.json()["id"], first.json()["id"])

    def test_keys_are_per_token(self):
        key = "shared-" + uuid.uuid4().hex
        other = self.service.create_token("other client")
        a = self.post(BODY, key)
        b = self.post(BODY, key, token=other)
        self.assertEqual(a.status, 201, a)
        self.assertEqual(b.status, 201, b)
        self.assertNotEqual(a.json()["id"], b.json()["id"])
        # Each replays its own.
        self.assertEqual(self.post(BODY, key).json()["id"], a.json()["id"])
        self.assertEqual(self.post(BODY, key, token=other).json()["id"], b.json()["id"])
        # A different body under the other token's key is that token's business only.
        c = self.post(dict(BODY, image="another"), key, token=other)
        self.assertProblem(c, 422, "idempotency_key_reused")

    def test_without_key_every_post_creates(self):
        before = self.db.count_rows()["instances"]
        ids = {self.create(**BODY)["id"] for _ in range(3)}
        self.assertEqual(len(ids), 3)
        self.assertEqual(self.db.count_rows()["instances"], before + 3)

    def test_concurrent_posts_with_one_key_create_one_instance(self):
        key = "race-" + uuid.uuid4().hex
        self.service.request("GET", "/instances")  # the token is verified before the race
        before = self.db.count_rows()
        barrier = threading.Barrier(20, timeout=30)

        def one(_):
            barrier.wait()
            return self.post(BODY, key)
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            responses = list(pool.map(one, range(20), timeout=120))
        statuses = [r.status for r in responses]
        self.assertEqual(statuses, [201] * 20, responses)
        ids = {r.json()["id"] for r in responses}
        self.assertEqual(len(ids), 1, f"one key gave several instances: {ids}")
        after = self.db.count_rows()
        self.assertEqual(after["instances"], before["instances"] + 1)
        self.assertEqual(after["jobs"], before["jobs"] + 1)
        self.assertEqual(after["idempotency_keys"], before["idempotency_keys"] + 1)
        self.wait_state(ids.pop(), "running")


class ListFilterTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                         "rate-limit": "2000", "max-in-flight": "100"},
                 "gce-staging": {"type": "fake", "zones": "zone-x", "boot-delay": "50ms",
                                 "rate-limit": "2000", "max-in-flight": "100"}}

    def list_all(self, query):
        r = self.service.request("GET", "/instances?" + query)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(set(doc), {"instances", "next"}, doc)
        self.assertIsNone(doc["next"], "more than one page where one was expected")
        return [i["id"] for i in doc["instances"]]

    def test_filters(self):
        run = uuid.uuid4().hex[:8]
        made = {}
        specs = [("gce", {"run": run, "team": "ci"}), ("gce", {"run": run, "team": "web"}),
                 ("gce", {"run": run, "team": "ci", "os": "linux"}),
                 ("gce-staging", {"run": run, "team": "ci"}), ("gce-staging", {"run": run}),
                 ("gce", {"run": run + "x", "team": "ci"})]
        for n, (provider, tags) in enumerate(specs):
            inst = self.create(provider=provider, tags=tags)
            self.assertEqual(inst["tags"], tags)
            made[inst["id"]] = (provider, tags, n)
        order = sorted(made, key=lambda i: -made[i][2])  # newest first
        for i in made:
            self.wait_state(i, "running")
        # Terminate two of them: the gce one tagged os=linux and the gce-staging one tagged team=ci.
        by_spec = {made[i][2]: i for i in made}
        doomed = [by_spec[2], by_spec[3]]
        for i in doomed:
            self.assertEqual(self.service.request("DELETE", f"/instances/{i}").status, 202)
        for i in doomed:
            self.wait_state(i, "terminated")

        def expect(pred):
            return [i for i in order if pred(*made[i][:2], i)]

        cases = {
            f"tag.run={run}": expect(lambda p, t, i: t["run"] == run),
            f"tag.run={run}&provider=gce": expect(lambda p, t, i: t["run"] == run and p == "gce"),
            f"tag.run={run}&provider=gce-staging":
                expect(lambda p, t, i: t["run"] == run and p == "gce-staging"),
            f"tag.run={run}&tag.team=ci":
                expect(lambda p, t, i: t["run"] == run and t.get("team") == "ci"),
            f"tag.team=ci&tag.run={run}&tag.os=linux":
                expect(lambda p, t, i: t["run"] == run and t.get("os") == "linux"),
            f"tag.run={run}&state=terminated":
                expect(lambda p, t, i: t["run"] == run and i in doomed),
            f"tag.run={run}&state=running":
                expect(lambda p, t, i: t["run"] == run and i not in doomed),
            f"tag.run={run}&state=running&provider=gce&tag.team=ci":
                expect(lambda p, t, i: t["run"] == run and i not in doomed and p == "gce"
                       and t.get("team") == "ci"),
            f"tag.run={run}&state=creating": [],
            f"tag.run={run}&provider=nope": [],
            f"tag.run={run}&tag.team=nope": [],
            f"tag.run={run}x": expect(lambda p, t, i: t["run"] == run + "x"),
        }
        for query, expected in cases.items():
            with self.subTest(query=query):
                self.assertEqual(self.list_all(query), expected)
        # Sanity: the filters above are not vacuous.
        self.assertEqual(len(cases[f"tag.run={run}"]), 5)
        self.assertEqual(len(cases[f"tag.run={run}&state=running&provider=gce&tag.team=ci"]), 1)

        # A filter value is matched whole: a NUL inside it does not cut it short.
        for query in (f"tag.run={run}&provider=gce%00zzz", f"tag.run={run}%00zzz",
                      f"tag.run={run}&provider=gce%00"):
            with self.subTest(query=query):
                r = self.service.request("GET", "/instances?" + query)
                if r.status == 200:
                    self.assertEqual([i["id"] for i in r.json()["instances"]], [],
                                     "a filter value was cut at its NUL")
                else:
                    self.assertProblem(r, 422)

        # provider= and state= alone, checked against the database.
        for query, where in (("provider=gce-staging", "provider = 'gce-staging'"),
                             ("state=terminated", "state = 'terminated'"),
                             ("provider=gce&state=running",
                              "provider = 'gce' AND state = 'running'")):
            with self.subTest(query=query):
                rows = self.db.query(f"SELECT id FROM instances WHERE {where} "
                                     "ORDER BY created_at DESC, id DESC").split()
                self.assertTrue(rows)
                self.assertEqual(self.list_all(query + "&limit=1000"), rows)


class PagingTest(ServiceTestCase):
    """Cursor paging over a few thousand rows inserted straight into the database."""

    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b"},
                 "gce-staging": {"type": "fake", "zones": "zone-x"}}
    ROWS = 3000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The rows have no creator: only a token that sees everything lists them.
        cls.service.token = cls.service.create_token("pager", "--scope", "all")
        # Terminated rows, so that no job runs. Every third row shares its created_at with two
        # others: the order (created_at DESC, id DESC) must break those ties by id.
        cls.db.query(f"""
            INSERT INTO instances (id, provider, image, instance_type, state, tags, created_at)
            SELECT gen_random_uuid(),
                   CASE WHEN g % 5 = 0 THEN 'gce-staging' ELSE 'gce' END,
                   'image-' || g, 'standard', 'terminated',
                   jsonb_build_object('parity', CASE WHEN g % 2 = 0 THEN 'even' ELSE 'odd' END,
                                      'batch', 'paging'),
                   now() - interval '1 hour' - ((g / 3) || ' ms')::interval
            FROM generate_series(1, {cls.ROWS}) g""")

    def expected(self, where="true"):
        return self.db.query(f"SELECT id FROM instances WHERE {where} "
                             "ORDER BY created_at DESC, id DESC").split()

    def walk(self, query, max_pages=200):
        seen = []
        pages = 0
        after = None
        while True:
            pages += 1
            self.assertLessEqual(pages, max_pages, "paging does not end")
            q = query + (f"&after={after}" if after else "")
            r = self.service.request("GET", "/instances?" + q)
            self.assertEqual(r.status, 200, r)
            doc = r.json()
            batch = doc["instances"]
            stamps = [i["created_at"] for i in batch]
            self.assertEqual(stamps, sorted(stamps, reverse=True), "a page is not newest first")
            if seen:
                self.assertLessEqual(batch[0]["created_at"] if batch else "", seen[-1][1])
            seen += [(i["id"], i["created_at"]) for i in batch]
            if doc["next"] is None:
                return [i for i, _ in seen], pages, batch
            self.assertIsInstance(doc["next"], str)
            self.assertTrue(batch, "an empty page with a next cursor")
            after = doc["next"]

    def check_walk(self, query, limit, where="true"):
        expected = self.expected(where)
        ids, pages, last = self.walk("&".join(x for x in (query, f"limit={limit}") if x))
        self.assertEqual(len(ids), len(set(ids)), "a row appeared twice")
        self.assertEqual(set(ids), set(expected), "rows missing or extra")
        self.assertEqual(ids, expected, "not in (created_at, id) descending order")
        full, rest = divmod(len(expected), limit)
        self.assertEqual(pages, full + (1 if rest else 0) or 1)
        self.assertEqual(len(last), rest or limit)
        return ids

    def test_walk_everything(self):
        total = int(self.db.query("SELECT count(*) FROM instances"))
        self.assertGreaterEqual(total, self.ROWS)
        for limit in (1000, 137):
            with self.subTest(limit=limit):
                self.check_walk("", limit)

    def test_default_limit_is_100(self):
        r = self.service.request("GET", "/instances")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json()["instances"]), 100)
        self.assertIsNotNone(r.json()["next"])
        r = self.service.request("GET", "/instances?limit=1000")
        self.assertEqual(len(r.json()["instances"]), 1000)

    def test_filters_combine_with_paging(self):
        for query, where in (
                ("provider=gce-staging", "provider = 'gce-staging'"),
                ("tag.parity=even", "tags @> '{\"parity\": \"even\"}'"),
                ("tag.parity=odd&provider=gce&state=terminated",
                 "tags @> '{\"parity\": \"odd\"}' AND provider = 'gce' AND state = 'terminated'"),
                ("tag.batch=paging&tag.parity=even&provider=gce",
                 "tags @> '{\"batch\": \"paging\", \"parity\": \"even\"}' AND provider = 'gce'")):
            with self.subTest(query=query):
                ids = self.check_walk(query, 137, where)
                self.assertGreater(len(ids), 137 * 3, "the filter left too little to page")

    def test_new_rows_do_not_disturb_a_walk(self):
        # Rows created after the walk began are newer than the cursor: they are not repeated
        # and nothing is skipped.
        expected = self.expected("provider = 'gce-staging'")
        r = self.service.request("GET", "/instances?provider=gce-staging&limit=250")
        first = r.json()
        new = self.create(provider="gce-staging")
        ids = [i["id"] for i in first["instances"]]
        after = first["next"]
        for _ in range(100):
            if after is None:
                break
            r = self.service.request("GET", f"/instances?provider=gce-staging&limit=250&after={after}")
            self.assertEqual(r.status, 200, r)
            ids += [i["id"] for i in r.json()["instances"]]
            after = r.json()["next"]
        self.assertIsNone(after)
        self.assertNotIn(new["id"], ids)
        self.assertEqual(ids, expected)


if __name__ == "__main__":
    unittest.main()
