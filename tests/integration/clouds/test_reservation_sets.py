"""Reservation sets at the clouds' emulators.

- CrossCloudSet_gce_<cloud>: a set with one placement on GCE and one on another cloud, each at
  its own emulator: both become active, each held at its own cloud; a cloud out of capacity
  fails the set and the other cloud's reservation is released, leaving nothing reserved
  anywhere; with on_partial keep the set is partial and the good one stays active. The other
  cloud is every cloud with a tests/support/<cloud>_fixture.py besides GCE; while GCE is the
  only one, it is a second GCE emulator (another project and endpoint): CrossCloudSet_gce_gce.
- KillMidSet_<cloud>: SIGKILL while a set's placements are being reserved, once with every
  placement finding room and once with one out of capacity (cancel_all): after the restart the
  set ends active with exactly one cloud reservation per placement, or failed with nothing held
  at the cloud, and the janitor finds nothing orphaned.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import time
import unittest
import uuid

from cloud_fixture import CloudCase, fixtures, scenarios
from cloudbrain_test import ServiceTestCase, wait_until


class SetMixin:
    def post_set(self, expect=201, **fields):
        r = self.service.request("POST", "/reservation-sets", fields)
        self.assertEqual(r.status, expect, r)
        return r.json()

    def get_set(self, sid):
        r = self.service.request("GET", "/reservation-sets/" + sid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_set(self, sid, *states, timeout=90):
        def check():
            body = self.get_set(sid)
            return body if body["state"] in states else None
        return wait_until(check, timeout, interval=0.1,
                          what="reservation set %s to be one of %s" % (sid, states))


class TwoCloudCase(ServiceTestCase):
    """A service with provider `first` at one cloud's emulator and `second` at another's."""

    fixture_classes = ()
    settings = {"janitor-interval": "1h", "reconcile-interval": "1h"}

    @classmethod
    def setUpClass(cls):
        cls.clouds = []
        try:
            for fixture_class in cls.fixture_classes:
                cls.clouds.append(fixture_class().start())
            env = {}
            for c in cls.clouds:
                env.update(c.service_env())
            cls.env = env
            super().setUpClass()
        except BaseException:
            for c in cls.clouds:
                c.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for c in cls.clouds:
                c.stop()

    @classmethod
    def service_providers(cls):
        first, second = cls.clouds
        return {"first": first.section(zones=first.zones[:2]),
                "second": second.section(zones=second.zones[:2])}


class CrossCloudSet(SetMixin):
    def tearDown(self):
        for c in self.clouds:
            c.set_capacity(c.zones, None)

    def held(self, set_body):
        """What each cloud holds now for each member, in placement order."""
        return [cloud.reservations_of(m["id"])
                for cloud, m in zip(self.clouds, set_body["reservations"])]

    def test_both_clouds_active_then_cancelled(self):
        first, second = self.clouds
        run = "x" + uuid.uuid4().hex[:10]
        body = self.post_set(placements=[{"provider": "first", "count": 2},
                                         {"provider": "second", "count": 1}],
                             duration_minutes=60, tags={"run": run})
        active = self.wait_set(body["id"], "active", "failed", "partial")
        self.assertEqual(active["state"], "active", active)
        held = self.held(active)
        for cloud, member, at_cloud in zip(self.clouds, active["reservations"], held):
            with self.subTest(cloud=cloud.name, provider=member["provider"]):
                self.assertEqual(member["state"], "active")
                self.assertEqual(len(at_cloud), 1, at_cloud)
                self.assertEqual((at_cloud[0]["zone"], at_cloud[0]["count"]),
                                 (member["zone"], member["count"]))
                self.assertEqual(member["upstream_id"], at_cloud[0]["id"])
                self.assertEqual(cloud.reservations_made(member["id"]), 1)
        r = self.service.request("DELETE", "/reservations?tag.run=" + run)
        self.assertEqual(r.status, 202, r)
        done = self.wait_set(body["id"], "cancelled")
        self.assertEqual([m["state"] for m in done["reservations"]], ["cancelled", "cancelled"])
        self.assertEqual(self.held(done), [[], []])

    def test_one_cloud_out_of_capacity_fails_the_set_and_releases_the_other(self):
        first, second = self.clouds
        second.set_capacity(second.zones[:2], 0)
        body = self.post_set(placements=[{"provider": "first", "count": 2},
                                         {"provider": "second", "count": 2}])
        failed = self.wait_set(body["id"], "failed", "active", "partial")
        self.assertEqual(failed["state"], "failed", failed)
        good, bad = failed["reservations"]
        self.assertEqual((good["state"], good["cancel_reason"]), ("cancelled", "set_failed"))
        self.assertEqual(bad["state"], "failed")
        self.assertIn(second.capacity_reason, bad["error_reason"])
        self.assertIn("placement 1 (first, 2 standard): cancelled because another placement "
                      "failed", failed["error_reason"])
        self.assertIn("placement 2 (second, 2 standard): no zone had capacity",
                      failed["error_reason"])
        self.assertEqual(self.held(failed), [[], []], "something is still reserved at a cloud")
        # Nothing of this deployment is left at either cloud, whatever the reservation.
        for cloud in self.clouds:
            self.assertEqual([r for r in cloud.reservations()
                              if r["reservation"] in (good["id"], bad["id"])], [])

    def test_keep_leaves_the_good_cloud_active_and_the_set_partial(self):
        first, second = self.clouds
        first.set_capacity(first.zones[:2], 0)
        body = self.post_set(placements=[{"provider": "first", "count": 1},
                                         {"provider": "second", "count": 2}], on_partial="keep")
        partial = self.wait_set(body["id"], "partial", "failed", "active")
        self.assertEqual(partial["state"], "partial", partial)
        bad, good = partial["reservations"]
        self.assertEqual((bad["state"], good["state"]), ("failed", "active"))
        self.assertEqual([len(h) for h in self.held(partial)], [0, 1])
        self.service.request("DELETE", "/reservation-sets/" + body["id"])
        done = self.wait_set(body["id"], "cancelled")
        self.assertEqual(self.held(done), [[], []])


def cross_cloud_pairs():
    """(gce, X) for every other cloud with a fixture; (gce, gce) while there is none."""
    found = fixtures()
    others = [name for name in found if name != "gce"]
    return [("gce", name) for name in others] or [("gce", "gce")]


for _a, _b in cross_cloud_pairs():
    _name = "CrossCloudSet_%s_%s" % (_a, _b)
    globals()[_name] = type(_name, (CrossCloudSet, TwoCloudCase),
                            {"fixture_classes": (fixtures()[_a], fixtures()[_b]),
                             "__module__": __name__})


class KillMidSet(SetMixin):
    """Two providers on one cloud, as two regions: `east` (the first two zones) and `west`
    (the third). The cloud makes reservations slowly, so that the kill lands while they are
    being made."""

    deployment = "kset-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "500ms", "orphan-grace": "2s",
                "job-lease": "2s", "reconcile-interval": "1h", "reservation-unused-grace": "1h"}

    @classmethod
    def service_providers(cls):
        zones = cls.cloud.zones
        return {"east": cls.cloud.section(zones=zones[:2]),
                "west": cls.cloud.section(zones=zones[2:3])}

    def tearDown(self):
        self.cloud.slow_reservations(None)
        self.cloud.set_capacity(self.cloud.zones, None)

    def kill_while_reserving(self, placements, on_partial="cancel_all"):
        seq = self.cloud.seq()
        body = self.post_set(placements=placements, on_partial=on_partial)
        wait_until(lambda: len(self.cloud.reserve_zones_since(seq)) >= 1, 30, interval=0.05,
                   what="a reservation call at the cloud")
        self.service.kill()
        self.assertIn(self.db.query(
            f"SELECT state FROM reservation_sets WHERE id = '{body['id']}'"),
            ("pending", "cancelling"), "the kill came too late to be in the middle")
        self.service.start()
        return body

    def assert_nothing_orphaned(self, members):
        # Several janitor passes past the orphan grace release nothing: nothing was orphaned.
        time.sleep(2.5)
        passes = {p: self.provider(p)["janitor"]["passes"] for p in ("east", "west")}
        wait_until(lambda: all(self.provider(p)["janitor"]["passes"] >= n + 3
                               for p, n in passes.items()), 30, what="3 janitor passes each")
        for p in ("east", "west"):
            self.assertEqual(self.provider(p)["janitor"]["orphans_cancelled"], 0, p)

    def test_a_kill_while_every_placement_is_reserved(self):
        self.cloud.slow_reservations(2.0)
        body = self.kill_while_reserving([{"provider": "east", "count": 2},
                                          {"provider": "west", "count": 1}])
        active = self.wait_set(body["id"], "active", "failed", "partial")
        self.assertEqual(active["state"], "active", active)
        self.cloud.slow_reservations(None)
        for m in active["reservations"]:
            held = self.cloud.reservations_of(m["id"])
            self.assertEqual([r["zone"] for r in held], [m["zone"]], held)
            self.assertEqual(self.cloud.reservations_made(m["id"]), 1,
                             "a placement was reserved twice")
        self.assert_nothing_orphaned(active["reservations"])
        self.service.request("DELETE", "/reservation-sets/" + body["id"])
        done = self.wait_set(body["id"], "cancelled")
        for m in done["reservations"]:
            self.assertEqual(self.cloud.reservations_of(m["id"]), [])

    def test_a_kill_while_a_set_fails_leaves_nothing_at_the_cloud(self):
        zones = self.cloud.zones
        self.cloud.set_capacity(zones[2:3], 0)  # west has no room
        self.cloud.slow_reservations(2.0)
        body = self.kill_while_reserving([{"provider": "east", "count": 2},
                                          {"provider": "west", "count": 1}])
        failed = self.wait_set(body["id"], "failed", "active", "partial")
        self.assertEqual(failed["state"], "failed", failed)
        self.cloud.slow_reservations(None)
        east, west = failed["reservations"]
        self.assertEqual((east["state"], west["state"]), ("cancelled", "failed"))
        for m in failed["reservations"]:
            self.assertEqual(self.cloud.reservations_of(m["id"]), [],
                             "left reserved at the cloud")
        self.assertLessEqual(self.cloud.reservations_made(east["id"]), 1)
        self.assert_nothing_orphaned(failed["reservations"])
        self.assertEqual([r for r in self.cloud.reservations()
                          if r["reservation"] in (east["id"], west["id"])], [])


scenarios(globals(), KillMidSet)

if __name__ == "__main__":
    unittest.main()
