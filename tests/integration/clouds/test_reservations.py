"""What every cloud must do for capacity reservations, through the real binary against the
cloud's emulator (tests/support/<cloud>_fixture.py): zone fallback and failure with nothing left
reserved, instances consuming a reservation until it is full, cancel by tag in every zone, the
janitor (a doubtful view releases nothing; expired, unused and orphaned ones go, a fresh one in
use stays), and a SIGKILL in the middle of a multi-zone reservation. Every class here runs once
per cloud, as <Class>_<cloud>.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import time
import unittest
import uuid

from cloud_fixture import scenarios
from cloudbrain_test import wait_until



class Reservations:
    deployment = "resv-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "1h", "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        return {"main": cls.cloud.section(zones=cls.cloud.zones)}

    def tearDown(self):
        self.cloud.set_capacity(self.cloud.zones, None)

    def test_zone_a_exhausted_moves_to_zone_b(self):
        zones = self.cloud.zones
        self.cloud.set_capacity([zones[0]], 0)
        seq = self.cloud.seq()
        body = self.reserve(count=3, zones=zones[:2], duration_minutes=90, tags={"run": "fb"})
        active = self.wait_reservation(body["id"], "active", "failed")
        self.assertEqual(active["state"], "active", active)
        self.assertEqual(active["zone"], zones[1])
        self.assertEqual(active["machine_type"], self.cloud.machine_types["standard"])
        held = self.cloud.reservations_of(body["id"])
        self.assertEqual(len(held), 1, held)
        self.assertEqual((held[0]["zone"], held[0]["count"]), (zones[1], 3))
        self.assertEqual(held[0]["machine_type"], self.cloud.machine_types["standard"])
        self.assertEqual(active["upstream_id"], held[0]["id"])
        self.assertEqual(self.cloud.reserve_zones_since(seq), zones[:2],
                         "zone a first, then zone b")
        self.service.request("DELETE", "/reservations/" + body["id"])
        self.wait_reservation(body["id"], "cancelled")
        self.assertEqual(self.cloud.reservations_of(body["id"]), [])

    def test_every_zone_exhausted_fails_with_every_reason_and_holds_nothing(self):
        zones = self.cloud.zones
        self.cloud.set_capacity(zones, 0)
        body = self.reserve(count=2)  # every zone of the provider
        failed = self.wait_reservation(body["id"], "failed", "active")
        self.assertEqual(failed["state"], "failed", failed)
        for zone in zones:
            self.assertIn(zone, failed["error_reason"])
        self.assertIn(self.cloud.capacity_reason, failed["error_reason"])
        self.assertEqual(self.cloud.reservations_of(body["id"]), [], "something is still reserved")

    def test_instances_consume_it_and_are_refused_once_it_is_full(self):
        zone = self.cloud.zones[2]
        rid = self.reserve(count=2, zones=[zone])["id"]
        self.wait_reservation(rid, "active")
        a = self.create(reservation_id=rid)
        b = self.create(reservation_id=rid)
        for i in (a, b):
            self.assertEqual(self.wait_running(i["id"])["zone"], zone)
            vm = self.cloud.vm(i["id"])
            self.assertIsNotNone(vm["reservation"], vm)
        self.assertEqual(self.cloud.reservations_of(rid)[0]["in_use"], 2)
        self.assertEqual(self.reservation(rid)["in_use"], 2)
        full = self.service.request("POST", "/instances", {"provider": "main",
                                                           "image": self.cloud.image,
                                                           "reservation_id": rid})
        self.assertProblem(full, 409, "reservation_full")
        self.service.request("DELETE", "/instances/" + a["id"])
        self.wait_terminated(a["id"])
        wait_until(lambda: self.cloud.reservations_of(rid)[0]["in_use"] == 1, 30,
                   what="the place to come back at the cloud")
        self.assertEqual(self.reservation(rid)["in_use"], 1)
        self.service.request("DELETE", "/instances/" + b["id"])
        self.wait_terminated(b["id"])
        self.service.request("DELETE", "/reservations/" + rid)
        self.wait_reservation(rid, "cancelled")
        self.assertEqual(self.cloud.reservations_of(rid), [])

    def test_cancel_by_tag_removes_every_match_in_every_zone(self):
        run = "r" + uuid.uuid4().hex[:10]
        zones = self.cloud.zones[:3]
        mine = [self.reserve(count=1, zones=[z], tags={"run": run})["id"] for z in zones]
        keep = self.reserve(count=1, zones=[zones[0]], tags={"run": run + "k"})["id"]
        for rid in mine + [keep]:
            self.wait_reservation(rid, "active")
        self.assertEqual(sorted(r["zone"] for rid in mine for r in self.cloud.reservations_of(rid)),
                         sorted(zones))
        r = self.service.request("DELETE", "/reservations?tag.run=" + run)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(sorted(x["id"] for x in r.json()["reservations"]), sorted(mine))
        for rid in mine:
            self.wait_reservation(rid, "cancelled")
            self.assertEqual(self.cloud.reservations_of(rid), [])
        self.assertEqual(len(self.cloud.reservations_of(keep)), 1)
        self.service.request("DELETE", "/reservations/" + keep)
        self.wait_reservation(keep, "cancelled")


class Janitor:
    deployment = "jan-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "500ms",
                "reservation-unused-grace": "5s", "orphan-grace": "3s",
                "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        return {"main": cls.cloud.section(zones=cls.cloud.zones)}

    def janitor(self):
        return self.provider()["janitor"]

    def test_a_doubtful_view_releases_nothing(self):
        self.cloud.fail_listings("reservations")
        try:
            rid = self.reserve(count=1, zones=[self.cloud.zones[1]])["id"]
            self.wait_reservation(rid, "active")
            wait_until(lambda: self.janitor()["frozen"], 30, what="the janitor to freeze")
            self.forget_reservation(rid)
            time.sleep(4)  # past the orphan grace, several passes
            self.assertTrue(self.janitor()["frozen"])
            self.assertEqual(len(self.cloud.reservations_of(rid)), 1, "released on a doubtful view")
        finally:
            self.cloud.clear_faults()
        # Its view clear again, the janitor releases the orphan.
        wait_until(lambda: not self.cloud.reservations_of(rid), 30,
                   what="the orphan to be released once the listing works")
        self.assertFalse(self.janitor()["frozen"])

    def test_expired_unused_and_orphaned_go_and_a_fresh_one_stays(self):
        zones = self.cloud.zones
        fresh = self.reserve(count=1, zones=[zones[0]])["id"]
        expiring = self.reserve(count=1, zones=[zones[1]])["id"]
        orphan = self.reserve(count=2, zones=[zones[2]])["id"]
        for rid in (fresh, expiring, orphan):
            self.wait_reservation(rid, "active")
        inst = self.create(reservation_id=fresh)["id"]  # in use: never "unused"
        self.wait_running(inst)
        # Past its end (the cloud's own end, if it has one, is later: only the janitor acts).
        self.db.query("UPDATE reservations SET ends_at = now() - interval '1 second' "
                      f"WHERE id = '{expiring}'")
        self.forget_reservation(orphan)
        done = self.wait_reservation(expiring, "expired", timeout=30)
        self.assertEqual(done["cancel_reason"], "expired")
        self.assertEqual(self.cloud.reservations_of(expiring), [])
        wait_until(lambda: not self.cloud.reservations_of(orphan), 30,
                   what="the orphan to be released at the cloud")
        recorded = ("SELECT count(*) FROM reservation_events WHERE kind = 'orphan_cancelled' "
                    f"AND reservation_id = '{orphan}' AND zone = '{zones[2]}'")
        wait_until(lambda: self.db.query(recorded) != "0", 10, what="the orphan's event")
        self.assertEqual(self.db.query(recorded), "1")
        # The fresh one, in use, is left alone through several passes.
        passes = self.janitor()["passes"]
        wait_until(lambda: self.janitor()["passes"] >= passes + 3, 30, what="3 janitor passes")
        self.assertEqual(self.reservation(fresh)["state"], "active")
        self.assertEqual(len(self.cloud.reservations_of(fresh)), 1)
        # Once its instance is gone it stands unused, and goes after its grace.
        self.service.request("DELETE", "/instances/" + inst)
        self.wait_terminated(inst)
        unused = self.wait_reservation(fresh, "cancelled", timeout=30)
        self.assertEqual(unused["cancel_reason"], "unused")
        self.assertEqual(self.cloud.reservations_of(fresh), [])
        j = self.janitor()
        self.assertGreaterEqual(j["expired"], 1)
        self.assertGreaterEqual(j["unused"], 1)
        self.assertGreaterEqual(j["orphans_cancelled"], 1)
        self.assertFalse(j["frozen"])


class KillMidReservation:
    """SIGKILL while the reservation is being made in its second zone: once cloudbrain is back,
    the reservation is active in exactly one zone and nothing else is held anywhere."""

    deployment = "kill-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "500ms", "orphan-grace": "2s",
                "job-lease": "2s", "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        return {"main": cls.cloud.section(zones=cls.cloud.zones)}

    def test_a_kill_in_the_middle_leaves_nothing_orphaned(self):
        zones = self.cloud.zones
        self.cloud.set_capacity([zones[0]], 0)
        self.cloud.slow_reservations(3.0)
        try:
            seq = self.cloud.seq()
            rid = self.reserve(count=2, zones=zones[:3])["id"]
            wait_until(lambda: zones[1] in self.cloud.reserve_zones_since(seq), 30,
                       interval=0.05, what="the reservation call in the second zone")
            self.service.kill()
            self.assertEqual(self.db.query(f"SELECT state FROM reservations WHERE id = '{rid}'"),
                             "pending")
            self.service.start()
            active = self.wait_reservation(rid, "active", "failed", timeout=60)
            self.assertEqual(active["state"], "active", active)
            held = self.cloud.reservations_of(rid)
            self.assertEqual([r["zone"] for r in held], [active["zone"]], held)
            self.assertEqual(active["zone"], zones[1], "the zone in flight was adopted")
            self.assertEqual(self.cloud.reservations_made(rid), 1)
        finally:
            self.cloud.slow_reservations(None)
            self.cloud.set_capacity(zones, None)
        # Several janitor passes past the orphan grace find nothing to release.
        time.sleep(2.5)
        passes = self.provider()["janitor"]["passes"]
        wait_until(lambda: self.provider()["janitor"]["passes"] >= passes + 3, 30,
                   what="3 janitor passes")
        self.assertEqual(self.provider()["janitor"]["orphans_cancelled"], 0)
        self.assertEqual([r["zone"] for r in self.cloud.reservations_of(rid)], [zones[1]])
        self.service.request("DELETE", "/reservations/" + rid)
        self.wait_reservation(rid, "cancelled")
        self.assertEqual(self.cloud.reservations_of(rid), [])


scenarios(globals(), Reservations, Janitor, KillMidReservation)

if __name__ == "__main__":
    unittest.main()
