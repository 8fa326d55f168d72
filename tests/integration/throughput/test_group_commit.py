"""Group commit of POST /instances, through the real binary against PostgreSQL.

DurableAcrossKills: creates arrive 16 at a time while cloudbrain is SIGKILLed at random moments
and started again, until 1,000 have been answered 201; every one of them is in the database
afterwards, with its create job. AnswersNotMixed: 5,000 concurrent creates with distinct
Idempotency-Keys, 5% of them invalid (refused by validation, or by a constraint of the
database that only that row breaks): every valid one is 201 with its own instance, every
invalid one gets its own 4xx, and nothing else is stored.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import random
import threading
import time
import unittest
import uuid

from cloudbrain_test import Database, Service, ServiceTestCase

FAKE = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                "rate-limit": "200", "max-in-flight": "50"}}


class DurableAcrossKills(unittest.TestCase):
    CREATES = 1000
    BUDGET = 90  # seconds of creating and killing (about 30 on an idle machine)

    def test_every_201_survives_sigkill(self):
        db = Database()
        self.addCleanup(db.drop)
        service = Service(db, providers=FAKE, settings={"log-level": "warn"})
        service.start()
        self.addCleanup(service.stop)
        service.token  # made while it is up
        rng = random.Random()
        answered = {}  # id -> image, for every 201
        lock = threading.Lock()
        kills = 0
        started = time.monotonic()
        serial = 0

        def create(n):
            body = {"provider": "gce", "image": f"image-{n}", "tags": {"n": str(n)}}
            try:
                r = service.request("POST", "/instances", body, timeout=10)
            except OSError:
                return  # killed under it: no answer, nothing promised
            if r.status == 201:
                self.assertEqual(r.json()["image"], f"image-{n}", r)
                with lock:
                    answered[r.json()["id"]] = f"image-{n}"
            else:
                self.assertGreaterEqual(r.status, 500, r)  # only what the kill caused

        while len(answered) < self.CREATES:
            self.assertLess(time.monotonic() - started, self.BUDGET,
                            f"only {len(answered)} creates answered in {self.BUDGET}s")
            # A round: 16 at a time until the kill, which lands after a random share of the
            # round's answers, while others are queued or being committed.
            before = len(answered)
            kill_after = rng.randint(20, 120)
            with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
                futures = [pool.submit(create, serial + k) for k in range(160)]
                serial += 160
                deadline = time.monotonic() + 20
                while len(answered) - before < kill_after and time.monotonic() < deadline and \
                        not all(f.done() for f in futures):
                    time.sleep(0.002)
                service.kill()
                kills += 1
                for f in futures:
                    f.result(timeout=30)
            service.start()
        service.stop()
        self.assertGreaterEqual(kills, 5)

        stored = dict(line.split("|") for line in db.query(
            "SELECT i.id, i.image FROM instances i JOIN jobs j ON j.instance_id = i.id "
            "AND j.kind = 'create_instance'").splitlines())
        missing = [i for i in answered if i not in stored]
        self.assertEqual(missing, [], f"{len(missing)} creates answered 201 are not stored")
        self.assertEqual({i: stored[i] for i in answered}, answered)
        print(f"\n{len(answered)} creates answered 201 across {kills} SIGKILLs, all stored "
              f"({len(stored)} rows: answers lost to the kills were committed too) in "
              f"{time.monotonic() - started:.1f}s", flush=True)


class AnswersNotMixed(ServiceTestCase):
    providers = FAKE
    settings = {"log-level": "warn"}
    COUNT = 5000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # Refused by the database only, after validation: such a create's batch must still
        # commit every other row.
        cls.db.query("ALTER TABLE instances ADD CONSTRAINT test_no_poison "
                     "CHECK (image NOT LIKE 'poison-%')")

    def request_for(self, n):
        """(body or raw bytes, what must come back) for request n: 4% refused by validation in
        four ways, 1% by the database, the rest valid."""
        body = {"provider": "gce", "image": f"image-{n}", "tags": {"n": str(n)}}
        kind = n % 100
        if kind == 10:
            body[f"field_{n}"] = 1
            return body, (422, "unknown_field", f"unknown field 'field_{n}'")
        if kind == 30:
            body["instance_type"] = f"size-{n}"
            return body, (422, "invalid_request", f"not 'size-{n}'")
        if kind == 50:
            body["provider"] = f"nowhere-{n}"
            return body, (422, "unknown_provider", f"unknown provider 'nowhere-{n}'")
        if kind == 70:
            return (b'{"provider":"gce","image":"image-%d"' % n), (400, "malformed_json", None)
        if kind == 90:
            body["image"] = f"poison-{n}"
            return body, (422, "invalid_request", None)
        return body, (201, None, None)

    def test_5000_concurrent_creates_each_get_their_own_answer(self):
        self.service.request("GET", "/instances?limit=1")  # the token is verified up front
        keys = {n: f"key-{n}-{uuid.uuid4().hex}" for n in range(self.COUNT)}

        def post(n):
            payload, expected = self.request_for(n)
            headers = {"Idempotency-Key": keys[n], "Content-Type": "application/json"}
            if isinstance(payload, bytes):
                r = self.service.request("POST", "/instances", headers=headers, raw=payload,
                                         timeout=60)
            else:
                r = self.service.request("POST", "/instances", payload, headers=headers,
                                         timeout=60)
            return n, r, expected

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(post, range(self.COUNT), timeout=120))
        took = time.monotonic() - started

        created = {}  # n -> id
        for n, r, (status, code, detail) in results:
            self.assertEqual(r.status, status, (n, r))
            if status == 201:
                body = r.json()
                self.assertEqual(body["image"], f"image-{n}", (n, body))
                self.assertEqual(body["tags"], {"n": str(n)}, (n, body))
                self.assertEqual(body["state"], "creating")
                self.assertEqual(r.header("Location").rsplit("/", 1)[1], body["id"])
                created[n] = body["id"]
            else:
                p = self.assertProblem(r, status, code)
                if detail:
                    self.assertTrue(any(detail in e for e in p["errors"]), (n, p))
        valid = [n for n in range(self.COUNT) if self.request_for(n)[1][0] == 201]
        self.assertEqual(sorted(created), valid)
        self.assertEqual(len(set(created.values())), len(valid), "two creates share an id")

        # Nothing else stored: exactly the valid creates, each with its job and its key.
        rows = self.db.query(
            "SELECT i.id, i.image, k.key FROM instances i "
            "JOIN jobs j ON j.instance_id = i.id AND j.kind = 'create_instance' "
            "JOIN idempotency_keys k ON k.instance_id = i.id").splitlines()
        stored = {tuple(line.split("|")) for line in rows}
        self.assertEqual(stored, {(created[n], f"image-{n}", keys[n]) for n in valid})
        self.assertEqual(self.db.count_rows(), {"instances": len(valid), "jobs": len(valid),
                                                "idempotency_keys": len(valid)})
        # The keys replay their own answers.
        for n in random.Random(7).sample(valid, 20):
            payload, _ = self.request_for(n)
            r = self.service.request("POST", "/instances", payload,
                                     headers={"Idempotency-Key": keys[n]})
            self.assertEqual(r.status, 201, r)
            self.assertEqual(r.json()["id"], created[n])
        print(f"\n{self.COUNT} creates ({len(valid)} valid) answered in {took:.1f}s",
              flush=True)


if __name__ == "__main__":
    unittest.main()
