"""Reservation sets through the real binary and the fake provider, as two regions (east, west)
and one with no room at all (full): a set across regions becomes active, fails whole under
cancel_all and stays partial under keep, follows its members when they end one by one, counts
its placements together under the cost caps, replays under an Idempotency-Key, and refuses bad
requests storing nothing."""

import concurrent.futures
import datetime
import unittest
import uuid

from cloudbrain_test import ServiceTestCase, wait_until


def fake(**extra):
    section = {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
               "rate-limit": "2000", "max-in-flight": "100"}
    section.update(extra)
    return section


class SetCase(ServiceTestCase):
    def post_set(self, expect=201, headers=None, **fields):
        body = {"placements": [{"provider": "east", "count": 1}]}
        body.update(fields)
        r = self.service.request("POST", "/reservation-sets", body, headers=headers)
        self.assertEqual(r.status, expect, r)
        return r

    def get_set(self, sid):
        r = self.service.request("GET", f"/reservation-sets/{sid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_set(self, sid, *states, timeout=30):
        def check():
            body = self.get_set(sid)
            return body if body["state"] in states else None
        return wait_until(check, timeout, what=f"reservation set {sid} to be one of {states}")

    def reservation(self, rid):
        r = self.service.request("GET", f"/reservations/{rid}")
        self.assertEqual(r.status, 200, r)
        return r.json()

    def held(self, provider):
        """How many reservations the fake provider holds now."""
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        return {p["name"]: p for p in r.json()["providers"]}[provider]["details"]["reservations"]

    def set_history(self, sid):
        return self.db.query(
            "SELECT string_agg(coalesce(from_state::text, '-') || '>' || to_state, ' ' ORDER BY id)"
            f" FROM reservation_set_events WHERE set_id = '{sid}'")


class RegionSets(SetCase):
    providers = {
        "east": fake(**{"max-reserved-instances": "10"}),
        "west": fake(**{"zones": "zone-c zone-d"}),
        "full": fake(**{"zones": "zone-x zone-y", "capacity-per-zone": "0"}),
    }
    settings = {"janitor-interval": "1h", "reservation-unused-grace": "1h"}

    def test_a_set_across_two_regions_becomes_active_and_cancels_whole(self):
        run = "s" + uuid.uuid4().hex[:10]
        held = {p: self.held(p) for p in ("east", "west")}
        r = self.post_set(placements=[{"provider": "east", "count": 2, "zones": ["zone-b"]},
                                      {"provider": "west", "count": 3, "instance_type": "premium"}],
                          duration_minutes=120, tags={"run": run})
        body = r.json()
        self.assertTrue(r.header("Location").endswith("/reservation-sets/" + body["id"]))
        self.assertEqual((body["state"], body["on_partial"], body["tags"]),
                         ("pending", "cancel_all", {"run": run}))
        members = body["reservations"]
        self.assertEqual([(m["provider"], m["count"], m["instance_type"], m["state"])
                          for m in members],
                         [("east", 2, "standard", "pending"), ("west", 3, "premium", "pending")])
        for m in members:
            self.assertEqual(m["set_id"], body["id"])
            self.assertEqual(m["tags"], {"run": run})
            self.assertEqual(m["ends_at"], body["ends_at"])
        active = self.wait_set(body["id"], "active", "failed", "partial")
        self.assertEqual(active["state"], "active", active)
        self.assertIsNone(active["error_reason"])
        east, west = active["reservations"]
        self.assertEqual((east["state"], east["zone"]), ("active", "zone-b"))
        self.assertEqual((west["state"], west["zone"]), ("active", "zone-c"))
        # Each member is an ordinary reservation too.
        self.assertEqual(self.reservation(east["id"])["set_id"], body["id"])
        self.assertEqual({p: self.held(p) for p in ("east", "west")},
                         {p: n + 1 for p, n in held.items()})

        r = self.service.request("DELETE", f"/reservation-sets/{body['id']}")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["state"], "cancelling")
        self.assertEqual({m["state"] for m in r.json()["reservations"]}, {"cancelling"})
        done = self.wait_set(body["id"], "cancelled")
        self.assertEqual(done["cancel_reason"], "requested")
        self.assertEqual([(m["state"], m["cancel_reason"]) for m in done["reservations"]],
                         [("cancelled", "requested")] * 2)
        self.assertEqual({p: self.held(p) for p in ("east", "west")}, held)
        self.assertEqual(self.set_history(body["id"]),
                         "->pending pending>active active>cancelling cancelling>cancelled")
        again = self.service.request("DELETE", f"/reservation-sets/{body['id']}")
        self.assertEqual((again.status, again.json()["state"]), (202, "cancelled"))

    def test_a_region_without_room_fails_the_set_and_nothing_stays_reserved(self):
        held = self.held("east")
        body = self.post_set(placements=[{"provider": "east", "count": 2},
                                         {"provider": "full", "count": 1}]).json()
        failed = self.wait_set(body["id"], "failed", "active", "partial", timeout=40)
        self.assertEqual(failed["state"], "failed", failed)
        self.assertEqual(failed["cancel_reason"], "placement_failed")
        east, full = failed["reservations"]
        self.assertEqual(full["state"], "failed")
        self.assertIn("no zone had capacity", full["error_reason"])
        self.assertEqual((east["state"], east["cancel_reason"]), ("cancelled", "set_failed"))
        reason = failed["error_reason"]
        self.assertIn("placement 1 (east, 2 standard): cancelled because another placement failed",
                      reason)
        self.assertIn("placement 2 (full, 1 standard): no zone had capacity", reason)
        for zone in ("zone-x", "zone-y"):
            self.assertIn(zone + ":", reason)
        self.assertEqual(self.held("east"), held, "the good region still holds its reservation")
        self.assertEqual(self.held("full"), 0)
        self.assertEqual(self.set_history(body["id"]),
                         "->pending pending>cancelling cancelling>failed")

    def test_keep_leaves_the_good_region_active_and_the_set_partial(self):
        held = self.held("west")
        body = self.post_set(placements=[{"provider": "full", "count": 1},
                                         {"provider": "west", "count": 2, "zones": ["zone-d"]}],
                             on_partial="keep").json()
        self.assertEqual(body["on_partial"], "keep")
        partial = self.wait_set(body["id"], "partial", "failed", "active", timeout=40)
        self.assertEqual(partial["state"], "partial", partial)
        full, west = partial["reservations"]
        self.assertEqual(full["state"], "failed")
        self.assertEqual((west["state"], west["zone"]), ("active", "zone-d"))
        self.assertIn("placement 1 (full, 1 standard): no zone had capacity",
                      partial["error_reason"])
        self.assertIn("placement 2 (west, 2 standard): active in zone-d", partial["error_reason"])
        self.assertEqual(self.held("west"), held + 1)
        self.service.request("DELETE", f"/reservation-sets/{body['id']}")
        done = self.wait_set(body["id"], "cancelled")
        self.assertEqual([m["state"] for m in done["reservations"]], ["failed", "cancelled"])
        self.assertEqual(self.held("west"), held)

    def test_every_placement_failing_under_keep_fails_the_set(self):
        body = self.post_set(placements=[{"provider": "full", "count": 1},
                                         {"provider": "full", "count": 2}],
                             on_partial="keep").json()
        failed = self.wait_set(body["id"], "failed", "partial", "active", timeout=40)
        self.assertEqual(failed["state"], "failed", failed)
        self.assertEqual([m["state"] for m in failed["reservations"]], ["failed", "failed"])

    def test_the_set_follows_members_cancelled_by_tag(self):
        run = "t" + uuid.uuid4().hex[:10]
        body = self.post_set(placements=[{"provider": "east", "count": 1},
                                         {"provider": "west", "count": 1}],
                             tags={"run": run}).json()
        self.wait_set(body["id"], "active")
        # One member alone: the set holds part of what it asked for.
        first = body["reservations"][0]["id"]
        self.service.request("DELETE", f"/reservations/{first}")
        partial = self.wait_set(body["id"], "partial")
        self.assertEqual([m["state"] for m in partial["reservations"]], ["cancelled", "active"])
        # The rest by tag, as cancel_all_regions(test_id) would: the set has ended.
        r = self.service.request("DELETE", f"/reservations?tag.run={run}")
        self.assertEqual(r.status, 202, r)
        done = self.wait_set(body["id"], "cancelled")
        self.assertEqual(done["cancel_reason"], "members_ended")

    def test_cost_caps_count_the_placements_together(self):
        run = "c" + uuid.uuid4().hex[:10]
        p = self.assertProblem(
            self.post_set(expect=422, placements=[{"provider": "east", "count": 6},
                                                  {"provider": "east", "count": 5}]),
            422, "reservation_cap_exceeded")
        self.assertIn("ask for 11 reserved instances together", p["detail"])
        self.assertIn("max-reserved-instances", p["detail"])
        before = self.db.count_rows("reservation_sets", "reservations", "jobs")
        single = self.service.request("POST", "/reservations",
                                      {"provider": "east", "count": 6, "tags": {"run": run}})
        self.assertEqual(single.status, 201, single)
        first = self.post_set(placements=[{"provider": "east", "count": 3},
                                          {"provider": "west", "count": 50}],
                              tags={"run": run}).json()
        counted = self.db.count_rows("reservation_sets", "reservations", "jobs")
        # 6 + 3 held on east: 2 more do not fit, whatever the other placements ask.
        p = self.assertProblem(
            self.post_set(expect=422, placements=[{"provider": "west", "count": 1},
                                                  {"provider": "east", "count": 2}]),
            422, "reservation_cap_exceeded")
        self.assertIn("provider 'east' allows at most 10 reserved instances", p["detail"])
        self.assertIn("9 are reserved now and the set asks for 2 more", p["detail"])
        self.assertNotIn("'west'", p["detail"])
        self.assertEqual(self.db.count_rows("reservation_sets", "reservations", "jobs"), counted)
        self.assertEqual(counted["reservation_sets"], before["reservation_sets"] + 1)
        self.wait_set(first["id"], "active")
        self.service.request("DELETE", f"/reservations?tag.run={run}")
        self.wait_set(first["id"], "cancelled")
        # Released, the room is there again; and concurrent sets never overfill it together.
        wait_until(lambda: self.reservation(single.json()["id"])["state"] == "cancelled", 30,
                   what="the single reservation to be cancelled")
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(
                lambda _: self.service.request(
                    "POST", "/reservation-sets",
                    {"placements": [{"provider": "west", "count": 1},
                                    {"provider": "east", "count": 3}],
                     "tags": {"run": run}}),
                range(8)))
        statuses = sorted(a.status for a in answers)
        self.assertEqual(statuses, [201] * 3 + [422] * 5, answers)
        self.assertLessEqual(int(self.db.query(
            "SELECT coalesce(sum(count), 0) FROM reservations WHERE provider = 'east' "
            "AND state IN ('pending', 'active', 'cancelling')")), 10)
        for a in answers:
            if a.status == 201:
                self.wait_set(a.json()["id"], "active")
        self.service.request("DELETE", f"/reservations?tag.run={run}")
        for a in answers:
            if a.status == 201:
                self.wait_set(a.json()["id"], "cancelled")

    def test_an_idempotency_key_replays_the_first_set(self):
        key = "set-" + uuid.uuid4().hex
        body = {"placements": [{"provider": "east", "count": 1}, {"provider": "west", "count": 1}],
                "duration_minutes": 30, "tags": {"run": "idem"}}
        tables = ("reservation_sets", "reservations", "jobs", "idempotency_keys")

        def post(b, k=key, path="/reservation-sets"):
            return self.service.request("POST", path, b, headers={"Idempotency-Key": k})
        before = self.db.count_rows(*tables)
        first = post(body)
        self.assertEqual(first.status, 201, first)
        after = self.db.count_rows(*tables)
        self.assertEqual(after, {"reservation_sets": before["reservation_sets"] + 1,
                                 "reservations": before["reservations"] + 2,
                                 "jobs": before["jobs"] + 2,
                                 "idempotency_keys": before["idempotency_keys"] + 1})
        sid = first.json()["id"]
        self.wait_set(sid, "active")
        for _ in range(2):
            again = post(body)
            self.assertEqual(again.status, 201, again)
            self.assertEqual(again.json(), first.json(), "the replay is not the first response")
            self.assertEqual(again.header("Location"), first.header("Location"))
            self.assertEqual(again.header("Idempotent-Replayed"), "true")
            self.assertEqual(self.db.count_rows(*tables), after, "a replay stored something")
        self.assertProblem(post(dict(body, on_partial="keep")), 422, "idempotency_key_reused")
        self.assertProblem(post({"provider": "east", "count": 1}, path="/reservations"), 422,
                           "idempotency_key_reused")
        self.assertProblem(post(body, k="k" * 256), 422, "invalid_idempotency_key")
        self.assertEqual(self.db.count_rows(*tables), after)
        twin_key = "twin-" + uuid.uuid4().hex
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: post(body, k=twin_key), range(8)))
        self.assertEqual({a.status for a in answers}, {201}, answers)
        ids = {a.json()["id"] for a in answers}
        self.assertEqual(len(ids), 1, ids)
        self.assertEqual(self.db.count_rows(*tables)["reservation_sets"],
                         after["reservation_sets"] + 1)
        for s in [sid] + list(ids):
            self.service.request("DELETE", f"/reservation-sets/{s}")
            self.wait_set(s, "cancelled")

    def test_bad_requests_are_refused_and_store_nothing(self):
        later = (datetime.datetime.now(datetime.timezone.utc)
                 + datetime.timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
        one = [{"provider": "east", "count": 1}]
        cases = [
            ({"placements": one, "colour": "red"}, "unknown_field", "unknown field 'colour'"),
            ({"placements": [{"provider": "east", "count": 1, "size": 2}]}, "unknown_field",
             "placements[0]: unknown field 'size'"),
            ({"placements": [{"provider": "nowhere", "count": 1}]}, "unknown_provider",
             "placements[0]: unknown provider 'nowhere'"),
            ({}, "invalid_request", "'placements' is required"),
            ({"placements": []}, "invalid_request", "non-empty array"),
            ({"placements": {"provider": "east"}}, "invalid_request", "non-empty array"),
            ({"placements": ["east"]}, "invalid_request", "placements[0]: a placement must be"),
            ({"placements": [{"provider": "east", "count": 1}] * 21}, "invalid_request",
             "at most 20 placements"),
            ({"placements": [{"provider": "east"}]}, "invalid_request",
             "placements[0]: 'count' is required"),
            ({"placements": one + [{"provider": "west", "count": 0}]}, "invalid_request",
             "placements[1]: 'count' must be at least 1"),
            ({"placements": [{"provider": "east", "count": 1, "zones": ["zone-c"]}]},
             "invalid_request", "placements[0]: zone 'zone-c' is not one of provider 'east'"),
            ({"placements": [{"provider": "east", "count": 1, "instance_type": "huge"}]},
             "invalid_request", "placements[0]: 'instance_type' must be"),
            ({"placements": [{"provider": "east", "count": 11}]}, "reservation_cap_exceeded",
             "placements[0]: 'count' 11 is over provider 'east''s cap of 10"),
            ({"placements": one, "on_partial": "some"}, "invalid_request",
             "'on_partial' must be 'cancel_all' or 'keep'"),
            ({"placements": one, "ends_at": later, "duration_minutes": 5}, "invalid_request",
             "not both"),
            ({"placements": one, "duration_minutes": 0}, "invalid_request", "duration_minutes"),
            ({"placements": one, "duration_minutes": 8 * 24 * 60}, "reservation_cap_exceeded",
             "longer than provider 'east''s cap of 7d"),
            ({"placements": one, "tags": {"Run": "x"}}, "invalid_request", "tag key 'Run'"),
        ]
        tables = ("reservation_sets", "reservations", "jobs", "idempotency_keys")
        before = self.db.count_rows(*tables)
        for body, code, text in cases:
            with self.subTest(body=body):
                r = self.service.request("POST", "/reservation-sets", body)
                p = self.assertProblem(r, 422, code)
                self.assertTrue(any(text in e for e in p["errors"]), p)
        r = self.service.request("POST", "/reservation-sets", raw=b"{not json",
                                 headers={"Content-Type": "application/json"})
        self.assertProblem(r, 400, "malformed_json")
        r = self.service.request("POST", "/reservation-sets", raw=b"x",
                                 headers={"Content-Type": "text/plain"})
        self.assertProblem(r, 415, "unsupported_media_type")
        self.assertEqual(self.db.count_rows(*tables), before)
        for path in ("/reservation-sets/not-a-uuid", f"/reservation-sets/{uuid.uuid4()}"):
            self.assertProblem(self.service.request("GET", path), 404,
                               "reservation_set_not_found")
            self.assertProblem(self.service.request("DELETE", path), 404,
                               "reservation_set_not_found")

    def test_list_filters_and_pages(self):
        run = "l" + uuid.uuid4().hex[:10]
        ids = [self.post_set(tags={"run": run}).json()["id"] for _ in range(5)]
        for sid in ids:
            self.wait_set(sid, "active")
        seen = []
        path = f"/reservation-sets?tag.run={run}&limit=2"
        while path:
            r = self.service.request("GET", path)
            self.assertEqual(r.status, 200, r)
            page = r.json()
            self.assertLessEqual(len(page["reservation_sets"]), 2)
            seen += [s["id"] for s in page["reservation_sets"]]
            path = (f"/reservation-sets?tag.run={run}&limit=2&after={page['next']}"
                    if page["next"] else None)
        self.assertEqual(seen, list(reversed(ids)), "newest first, each once")
        self.service.request("DELETE", f"/reservation-sets/{ids[0]}")
        self.wait_set(ids[0], "cancelled")
        r = self.service.request("GET", f"/reservation-sets?tag.run={run}&state=active")
        self.assertEqual(sorted(s["id"] for s in r.json()["reservation_sets"]), sorted(ids[1:]))
        r = self.service.request("GET", f"/reservation-sets?tag.run={run}x")
        self.assertEqual(r.json()["reservation_sets"], [])
        for query, code in (("state=sleeping", "invalid_request"), ("limit=0", "invalid_request"),
                            ("after=garbage", "invalid_request"),
                            ("provider=east", "unknown_parameter")):
            with self.subTest(query=query):
                self.assertProblem(self.service.request("GET", "/reservation-sets?" + query), 422,
                                   code)
        self.service.request("DELETE", f"/reservations?tag.run={run}")
        for sid in ids[1:]:
            self.wait_set(sid, "cancelled")


class SetJanitor(SetCase):
    providers = {"east": fake(), "west": fake(**{"zones": "zone-c"})}
    settings = {"janitor-interval": "300ms", "reservation-unused-grace": "1h",
                "orphan-grace": "1h"}

    def test_a_set_whose_members_reach_their_end_expires(self):
        body = self.post_set(placements=[{"provider": "east", "count": 1},
                                         {"provider": "west", "count": 2}]).json()
        self.wait_set(body["id"], "active")
        self.db.query("UPDATE reservations SET ends_at = now() - interval '1 second' "
                      f"WHERE set_id = '{body['id']}'")
        done = self.wait_set(body["id"], "expired", "cancelled", timeout=30)
        self.assertEqual(done["state"], "expired", done)
        self.assertEqual([m["state"] for m in done["reservations"]], ["expired", "expired"])
        self.assertEqual(self.set_history(body["id"]),
                         "->pending pending>active active>expired")


if __name__ == "__main__":
    unittest.main()
