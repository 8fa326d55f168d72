"""Capacity reservations through the real binary and the fake provider: the /reservations
resource, zone fallback, launching instances into a reservation, cancelling by tag, the cost
guards, and the reservation janitor."""

import concurrent.futures
import datetime
import unittest
import uuid

from cloudbrain_test import ServiceTestCase, wait_until

ZONES = "zone-a zone-b zone-c"


def fake(**extra):
    section = {"type": "fake", "zones": ZONES, "boot-delay": "50ms", "rate-limit": "2000",
               "max-in-flight": "100"}
    section.update(extra)
    return section


class ReservationCase(ServiceTestCase):
    def reserve(self, expect=201, **fields):
        body = {"provider": "gce", "count": 2}
        body.update(fields)
        r = self.service.request("POST", "/reservations", body)
        self.assertEqual(r.status, expect, r)
        return r

    def get(self, rid):
        r = self.service.request("GET", f"/reservations/{rid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_reservation(self, rid, *states, timeout=30):
        def check():
            body = self.get(rid)
            return body if body["state"] in states else None
        return wait_until(check, timeout, what=f"reservation {rid} to be one of {states}")

    def fake_details(self, name="gce"):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        for p in r.json()["providers"]:
            if p["name"] == name:
                return p
        raise AssertionError(f"no provider {name}")


class ReservationResourceTest(ReservationCase):
    providers = {
        "gce": fake(**{"zone-capacity": "zone-a:0 zone-b:6 zone-c:6",
                       "max-reserved-instances": "10", "max-reservation-duration": "2d"}),
        "other": fake(),
    }
    settings = {"janitor-interval": "1h", "reservation-unused-grace": "1h"}

    def test_a_full_first_zone_moves_the_reservation_to_the_next(self):
        r = self.reserve(count=3, zones=["zone-a", "zone-b"], tags={"run": "fallback"})
        body = r.json()
        self.assertEqual(body["state"], "pending")
        self.assertIsNone(body["zone"])
        self.assertTrue(r.header("Location").endswith("/reservations/" + body["id"]))
        for key in ("id", "provider", "instance_type", "machine_type", "count", "zone", "state",
                    "upstream_id", "in_use", "ends_at", "tags", "error_reason", "created_at",
                    "updated_at"):
            self.assertIn(key, body)
        active = self.wait_reservation(body["id"], "active", "failed")
        self.assertEqual(active["state"], "active", active)
        self.assertEqual(active["zone"], "zone-b")
        self.assertEqual(active["machine_type"], "fake-small")
        self.assertEqual(active["in_use"], 0)
        self.assertIsNotNone(active["upstream_id"])
        events = self.db.query(
            "SELECT string_agg(coalesce(from_state::text, '-') || '>' || to_state, ' ' ORDER BY id)"
            f" FROM reservation_events WHERE reservation_id = '{body['id']}'")
        self.assertEqual(events, "->pending pending>active")
        self.service.request("DELETE", f"/reservations/{body['id']}")
        self.wait_reservation(body["id"], "cancelled")

    def test_no_zone_with_room_fails_with_every_reason_and_holds_nothing(self):
        before = self.fake_details()["details"]["reservations"]
        r = self.reserve(count=7, zones=["zone-a", "zone-b", "zone-c"])
        failed = self.wait_reservation(r.json()["id"], "failed", "active")
        self.assertEqual(failed["state"], "failed", failed)
        reason = failed["error_reason"]
        for zone in ("zone-a", "zone-b", "zone-c"):
            self.assertIn(zone + ":", reason)
        self.assertIn("no zone had capacity", reason)
        self.assertEqual(self.fake_details()["details"]["reservations"], before)

    def test_instances_launch_into_it_until_it_is_full(self):
        rid = self.reserve(count=2, zones=["zone-c"]).json()["id"]
        self.wait_reservation(rid, "active")
        a = self.create(reservation_id=rid)
        self.assertEqual(a["reservation_id"], rid)
        self.assertEqual(a["zone"], "zone-c")
        b = self.create(reservation_id=rid, zone="zone-c")
        self.assertEqual(self.get(rid)["in_use"], 2)
        full = self.service.request("POST", "/instances",
                                    {"provider": "gce", "image": "img", "reservation_id": rid})
        self.assertProblem(full, 409, "reservation_full")
        self.wait_state(a["id"], "running")
        self.wait_state(b["id"], "running")
        # Deleting one gives its slot back, once it is gone.
        self.service.request("DELETE", f"/instances/{a['id']}")
        self.wait_state(a["id"], "terminated")
        self.assertEqual(self.get(rid)["in_use"], 1)
        c = self.create(reservation_id=rid)
        self.assertEqual(self.get(rid)["in_use"], 2)
        for i in (b, c):
            self.service.request("DELETE", f"/instances/{i['id']}")
            self.wait_state(i["id"], "terminated")
        self.assertEqual(self.get(rid)["in_use"], 0)

    def test_instances_are_refused_clearly(self):
        rid = self.reserve(count=1, zones=["zone-b"]).json()["id"]
        self.wait_reservation(rid, "active")
        cases = [
            ({"reservation_id": str(uuid.uuid4())}, 422, "reservation_not_found"),
            ({"reservation_id": rid, "instance_type": "premium"}, 422, "reservation_type_mismatch"),
            ({"reservation_id": rid, "provider": "other"}, 422, "reservation_provider_mismatch"),
            ({"reservation_id": rid, "zone": "zone-c"}, 422, "reservation_zone_mismatch"),
            ({"reservation_id": "not-a-uuid"}, 422, "invalid_request"),
        ]
        before = self.db.count_rows()
        for fields, status, code in cases:
            with self.subTest(fields=fields):
                body = {"provider": "gce", "image": "img"}
                body.update(fields)
                self.assertProblem(self.service.request("POST", "/instances", body), status, code)
        self.assertEqual(self.db.count_rows(), before, "a refused instance was stored")
        self.assertEqual(self.get(rid)["in_use"], 0)
        self.service.request("DELETE", f"/reservations/{rid}")
        self.wait_reservation(rid, "cancelled")
        r = self.service.request("POST", "/instances",
                                 {"provider": "gce", "image": "img", "reservation_id": rid})
        self.assertProblem(r, 409, "reservation_not_active")

    def test_bad_requests_are_refused_and_store_nothing(self):
        later = (datetime.datetime.now(datetime.timezone.utc)
                 + datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cases = [
            ({"provider": "gce", "count": 1, "colour": "red"}, 422, "unknown_field"),
            ({"provider": "nowhere", "count": 1}, 422, "unknown_provider"),
            ({"provider": "gce"}, 422, "invalid_request"),
            ({"provider": "gce", "count": 0}, 422, "invalid_request"),
            ({"provider": "gce", "count": "2"}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "zones": ["zone-x"]}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "zones": ["zone-a", "zone-a"]}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "zones": []}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "ends_at": "tomorrow"}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "ends_at": "2001-01-01T00:00:00Z"}, 422,
             "invalid_request"),
            ({"provider": "gce", "count": 1, "ends_at": later, "duration_minutes": 5}, 422,
             "invalid_request"),
            ({"provider": "gce", "count": 1, "duration_minutes": 0}, 422, "invalid_request"),
            # More than a century of minutes overflowed the clock once (found by fuzzing).
            ({"provider": "gce", "count": 1, "duration_minutes": 52596001}, 422,
             "invalid_request"),
            ({"provider": "gce", "count": 1, "duration_minutes": 2 ** 63 - 1}, 422,
             "invalid_request"),
            ({"provider": "gce", "count": 1, "tags": {"Bad Key": "x"}}, 422, "invalid_request"),
            ({"provider": "gce", "count": 1, "instance_type": "huge"}, 422, "invalid_request"),
        ]
        before = self.db.count_rows("reservations", "jobs")
        for body, status, code in cases:
            with self.subTest(body=body):
                self.assertProblem(self.service.request("POST", "/reservations", body), status,
                                   code)
        r = self.service.request("POST", "/reservations", raw=b"{not json",
                                 headers={"Content-Type": "application/json"})
        self.assertProblem(r, 400, "malformed_json")
        r = self.service.request("POST", "/reservations", raw=b"[1]",
                                 headers={"Content-Type": "application/json"})
        self.assertProblem(r, 422, "invalid_request")
        r = self.service.request("POST", "/reservations", raw=b"count=1",
                                 headers={"Content-Type": "text/plain"})
        self.assertProblem(r, 415, "unsupported_media_type")
        self.assertEqual(self.db.count_rows("reservations", "jobs"), before)
        for path in ("/reservations/not-a-uuid", f"/reservations/{uuid.uuid4()}"):
            self.assertProblem(self.service.request("GET", path), 404, "reservation_not_found")
            self.assertProblem(self.service.request("DELETE", path), 404, "reservation_not_found")

    def test_cost_guards_name_the_cap(self):
        p = self.assertProblem(self.reserve(expect=422, count=11), 422, "reservation_cap_exceeded")
        self.assertIn("max-reserved-instances", p["detail"])
        p = self.assertProblem(self.reserve(expect=422, count=1, duration_minutes=3 * 24 * 60),
                               422, "reservation_cap_exceeded")
        self.assertIn("max-reservation-duration", p["detail"])
        self.assertIn("2d", p["detail"])
        # The cap counts what is held: 6 + 4 fit, one more does not, until some is cancelled.
        first = self.reserve(count=6, zones=["zone-b"], tags={"run": "caps"}).json()["id"]
        second = self.reserve(count=4, zones=["zone-c"], tags={"run": "caps"}).json()["id"]
        p = self.assertProblem(self.reserve(expect=422, count=1), 422, "reservation_cap_exceeded")
        self.assertIn("10 are reserved now", p["detail"])
        self.wait_reservation(first, "active")
        self.service.request("DELETE", f"/reservations/{first}")
        self.wait_reservation(first, "cancelled")
        third = self.reserve(count=1, zones=["zone-b"], tags={"run": "caps"}).json()["id"]
        self.wait_reservation(third, "active")
        self.service.request("DELETE", "/reservations?tag.run=caps")
        for rid in (second, third):
            self.wait_reservation(rid, "cancelled")

    def test_an_idempotency_key_replays_the_first_reservation(self):
        key = "resv-" + uuid.uuid4().hex
        body = {"provider": "gce", "count": 1, "zones": ["zone-b"], "duration_minutes": 30,
                "tags": {"run": "idem"}}
        tables = ("reservations", "jobs", "idempotency_keys")

        def post(b, k=key, path="/reservations"):
            return self.service.request("POST", path, b, headers={"Idempotency-Key": k})
        before = self.db.count_rows(*tables)
        first = post(body)
        self.assertEqual(first.status, 201, first)
        after = self.db.count_rows(*tables)
        self.assertEqual(after, {t: before[t] + 1 for t in tables})
        rid = first.json()["id"]
        self.wait_reservation(rid, "active")
        for _ in range(2):
            again = post(body)
            self.assertEqual(again.status, 201, again)
            self.assertEqual(again.json(), first.json(), "the replay is not the first response")
            self.assertEqual(again.header("Location"), first.header("Location"))
            self.assertEqual(again.header("Idempotent-Replayed"), "true")
            self.assertEqual(self.db.count_rows(*tables), after, "a replay stored something")
        self.assertIsNone(first.header("Idempotent-Replayed"))
        # The key with another body, or on another route, is refused and stores nothing.
        self.assertProblem(post(dict(body, count=2)), 422, "idempotency_key_reused")
        self.assertProblem(post({"provider": "gce", "image": "img"}, path="/instances"), 422,
                           "idempotency_key_reused")
        self.assertProblem(post(body, k="k" * 256), 422, "invalid_idempotency_key")
        self.assertEqual(self.db.count_rows(*tables), after)
        # Concurrent twins under a new key make one reservation between them.
        twin_key = "twin-" + uuid.uuid4().hex
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(body, k=twin_key), range(8)))
        self.assertEqual({a.status for a in answers}, {201}, answers)
        ids = {a.json()["id"] for a in answers}
        self.assertEqual(len(ids), 1, ids)
        self.assertEqual(self.db.count_rows(*tables)["reservations"], after["reservations"] + 1)
        for r in [rid] + list(ids):
            self.service.request("DELETE", f"/reservations/{r}")
            self.wait_reservation(r, "cancelled")

    def test_without_an_end_it_lasts_a_day(self):
        body = self.reserve(count=1, zones=["zone-b"]).json()
        ends = datetime.datetime.fromisoformat(body["ends_at"].replace("Z", "+00:00"))
        left = ends - datetime.datetime.now(datetime.timezone.utc)
        self.assertGreater(left, datetime.timedelta(hours=23, minutes=58))
        self.assertLess(left, datetime.timedelta(hours=24, minutes=1))
        self.service.request("DELETE", f"/reservations/{body['id']}")
        self.wait_reservation(body["id"], "cancelled")

    def test_cancel_by_tag_takes_every_match_and_nothing_else(self):
        run = "t" + uuid.uuid4().hex[:12]
        mine = [self.reserve(count=1, zones=[z], tags={"run": run}).json()["id"]
                for z in ("zone-b", "zone-c", "zone-b")]
        other = self.reserve(count=1, provider="other", tags={"run": run}).json()["id"]
        keep = self.reserve(count=1, zones=["zone-c"], tags={"run": run + "x"}).json()["id"]
        for rid in mine + [other, keep]:
            self.wait_reservation(rid, "active")
        held_before = self.fake_details()["details"]["reservations"]
        self.assertProblem(self.service.request("DELETE", "/reservations"), 422, "tag_required")
        self.assertProblem(self.service.request("DELETE", "/reservations?state=active"), 422,
                           "unknown_parameter")
        r = self.service.request("DELETE", f"/reservations?tag.run={run}&provider=gce")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(sorted(x["id"] for x in r.json()["reservations"]), sorted(mine))
        self.assertTrue(all(x["state"] == "cancelling" for x in r.json()["reservations"]))
        for rid in mine:
            self.wait_reservation(rid, "cancelled")
        self.assertEqual(self.get(other)["state"], "active")
        self.assertEqual(self.get(keep)["state"], "active")
        self.assertEqual(self.fake_details()["details"]["reservations"], held_before - 3)
        # Without a provider, every provider's match goes.
        r = self.service.request("DELETE", f"/reservations?tag.run={run}")
        self.assertEqual([x["id"] for x in r.json()["reservations"]], [other])
        self.wait_reservation(other, "cancelled")
        again = self.service.request("DELETE", f"/reservations/{mine[0]}")
        self.assertEqual(again.status, 202, again)
        self.assertEqual(again.json()["state"], "cancelled")
        self.service.request("DELETE", f"/reservations/{keep}")
        self.wait_reservation(keep, "cancelled")

    def test_list_filters_and_pages(self):
        run = "l" + uuid.uuid4().hex[:12]
        ids = [self.reserve(count=1, zones=["zone-b"], tags={"run": run}).json()["id"]
               for _ in range(5)]
        for rid in ids:
            self.wait_reservation(rid, "active")
        seen = []
        path = f"/reservations?tag.run={run}&limit=2"
        while path:
            r = self.service.request("GET", path)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            self.assertLessEqual(len(page["reservations"]), 2)
            seen += [x["id"] for x in page["reservations"]]
            path = (f"/reservations?tag.run={run}&limit=2&after={page['next']}"
                    if page["next"] else None)
        self.assertEqual(seen, list(reversed(ids)), "newest first, each once")
        r = self.service.request("GET", f"/reservations?tag.run={run}&state=active&provider=gce")
        self.assertEqual(len(r.json()["reservations"]), 5)
        r = self.service.request("GET", f"/reservations?tag.run={run}&provider=other")
        self.assertEqual(r.json()["reservations"], [])
        for query, code in (("state=sleeping", "invalid_request"), ("limit=0", "invalid_request"),
                            ("after=garbage", "invalid_request"), ("colour=red",
                                                                   "unknown_parameter")):
            self.assertProblem(self.service.request("GET", "/reservations?" + query), 422, code)
        self.service.request("DELETE", f"/reservations?tag.run={run}")
        for rid in ids:
            self.wait_reservation(rid, "cancelled")


class JanitorTest(ReservationCase):
    providers = {"gce": fake(**{"zone-capacity": "zone-a:50 zone-b:50 zone-c:50"})}
    settings = {"janitor-interval": "300ms", "reservation-unused-grace": "4s",
                "orphan-grace": "1s", "reconcile-interval": "1h"}

    def janitor(self):
        return self.fake_details()["janitor"]

    def test_an_expired_reservation_is_cancelled_as_expired(self):
        rid = self.reserve(count=2, zones=["zone-a"]).json()["id"]
        rid_inst = None
        self.wait_reservation(rid, "active")
        # An instance in it keeps it from counting as unused; its end comes anyway.
        rid_inst = self.create(reservation_id=rid)["id"]
        self.db.query(f"UPDATE reservations SET ends_at = now() - interval '1 second' "
                      f"WHERE id = '{rid}'")
        done = self.wait_reservation(rid, "expired", timeout=20)
        self.assertEqual(done["cancel_reason"], "expired")
        self.assertGreaterEqual(self.janitor()["expired"], 1)
        events = self.db.query("SELECT string_agg(to_state || ':' || coalesce(reason, ''), ' ' "
                               f"ORDER BY id) FROM reservation_events WHERE reservation_id = '{rid}'")
        self.assertIn("cancelling:expired", events)
        self.assertTrue(events.endswith("expired:expired"), events)
        self.assertTrue(any("reservation past its end" in line for line in self.service.log_lines()))
        self.service.request("DELETE", f"/instances/{rid_inst}")
        self.wait_state(rid_inst, "terminated")

    def test_an_unused_one_goes_after_its_grace_and_a_used_one_stays(self):
        idle = self.reserve(count=1, zones=["zone-b"]).json()["id"]
        busy = self.reserve(count=1, zones=["zone-b"]).json()["id"]
        self.wait_reservation(idle, "active")
        self.wait_reservation(busy, "active")
        inst = self.create(reservation_id=busy)["id"]
        # Well inside the grace, both stay.
        self.assertEqual(self.get(idle)["state"], "active")
        done = self.wait_reservation(idle, "cancelled", timeout=20)
        self.assertEqual(done["cancel_reason"], "unused")
        self.assertEqual(self.get(busy)["state"], "active", "a reservation in use was cancelled")
        self.assertGreaterEqual(self.janitor()["unused"], 1)
        # Once its instance is gone, it is idle too, and goes after the grace.
        self.service.request("DELETE", f"/instances/{inst}")
        self.wait_state(inst, "terminated")
        self.assertEqual(self.get(busy)["state"], "active")
        self.wait_reservation(busy, "cancelled", timeout=20)

    def test_a_reservation_the_database_forgot_is_released_as_an_orphan(self):
        rid = self.reserve(count=3, zones=["zone-c"]).json()["id"]
        self.wait_reservation(rid, "active")
        held = self.fake_details()["details"]["reservations"]
        orphans_before = self.janitor()["orphans_cancelled"]
        # The row ends without its release (a restore from an older backup, a hand edit): the
        # cloud still holds the capacity, and only the janitor can see it.
        self.db.query("ALTER TABLE reservations DISABLE TRIGGER reservations_record_event")
        self.db.query(f"UPDATE reservations SET state = 'failed' WHERE id = '{rid}'")
        self.db.query("ALTER TABLE reservations ENABLE TRIGGER reservations_record_event")
        wait_until(lambda: self.fake_details()["details"]["reservations"] == held - 1, 20,
                   what="the orphan to be released")
        self.assertEqual(self.janitor()["orphans_cancelled"], orphans_before + 1)
        recorded = self.db.query(
            "SELECT count(*) FROM reservation_events WHERE kind = 'orphan_cancelled' "
            f"AND reservation_id = '{rid}' AND reason LIKE '%its reservation is failed%'")
        self.assertEqual(recorded, "1")
        self.assertTrue(any("orphan reservation released" in line
                            for line in self.service.log_lines()))


class YoungOrphanTest(ReservationCase):
    providers = {"gce": fake()}
    settings = {"janitor-interval": "300ms", "reservation-unused-grace": "1h",
                "orphan-grace": "1h", "reconcile-interval": "1h"}

    def test_nothing_younger_than_the_grace_is_released(self):
        rid = self.reserve(count=1, zones=["zone-a"]).json()["id"]
        self.wait_reservation(rid, "active")
        self.db.query(f"UPDATE reservations SET state = 'failed' WHERE id = '{rid}'")
        passes = self.fake_details()["janitor"]["passes"]
        wait_until(lambda: self.fake_details()["janitor"]["passes"] >= passes + 3, 20,
                   what="three janitor passes")
        self.assertEqual(self.fake_details()["details"]["reservations"], 1)
        self.assertEqual(self.fake_details()["janitor"]["orphans_cancelled"], 0)


if __name__ == "__main__":
    unittest.main()
