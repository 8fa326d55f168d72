"""Capacity reservations on the GCE provider, through the real binary against the GCE emulator:
zone fallback and failure with nothing left reserved, instances consuming a reservation the
cloud's way, cancel by tag across zones, the janitor (expired, unused, orphans, fresh ones left
alone), and a SIGKILL in the middle of a multi-zone reservation.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import datetime
import time
import unittest
import uuid

import gce_service
from cloudbrain_test import wait_until
from gce_service import PROJECT, SA_EMAIL, GceCase, gce_section, log_since, last_seq, make_key_file

ZONES3 = ["us-central1-a", "us-central1-b", "us-central1-c"]
ZONES_ALL = ZONES3 + ["europe-west1-b"]  # two regions
EMU = None


def setUpModule():
    global EMU
    EMU = gce_service.start_emulator()


def tearDownModule():
    gce_service.stop_emulator()


def emu_reservations(**match):
    out = []
    for r in EMU.control("GET", "reservations")["reservations"]:
        if all(r.get(k) == v for k, v in match.items()):
            out.append(r)
    return out


def set_capacity(zones, remaining):
    EMU.control("POST", "capacity", {"zones": zones, "remaining": remaining})


class ReservationCase(GceCase):
    def reserve(self, expect=201, **fields):
        body = {"provider": "gce", "count": 2}
        body.update(fields)
        r = self.service.request("POST", "/reservations", body)
        self.assertEqual(r.status, expect, r)
        return r.json()

    def reservation(self, rid):
        r = self.service.request("GET", "/reservations/" + rid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_reservation(self, rid, *states, timeout=60):
        def check():
            body = self.reservation(rid)
            return body if body["state"] in states else None
        return wait_until(check, timeout, interval=0.1,
                          what="reservation %s to be one of %s" % (rid, states))

    def cloud_name(self, rid):
        return "cbr-" + rid


class GceReservations(ReservationCase):
    deployment = "resv-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "1h", "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        key, _ = make_key_file(SA_EMAIL)
        return {"gce": gce_section(credentials=key, zones=" ".join(ZONES_ALL))}

    def tearDown(self):
        set_capacity(ZONES_ALL, None)

    def test_zone_a_exhausted_moves_to_zone_b(self):
        set_capacity([ZONES3[0]], 0)
        seq = last_seq()
        body = self.reserve(count=3, zones=ZONES3[:2], duration_minutes=90, tags={"run": "fb"})
        active = self.wait_reservation(body["id"], "active", "failed")
        self.assertEqual(active["state"], "active", active)
        self.assertEqual(active["zone"], ZONES3[1])
        self.assertEqual(active["machine_type"], "e2-small")
        held = emu_reservations(name=self.cloud_name(body["id"]))
        self.assertEqual(len(held), 1, held)
        self.assertEqual(held[0]["zone"], ZONES3[1])
        self.assertEqual(held[0]["count"], 3)
        self.assertTrue(held[0]["specificReservationRequired"])
        self.assertIn("e2-small", held[0]["machineType"])
        self.assertEqual(active["upstream_id"], str(held[0]["id"]))
        # The cloud's own end date is the backstop behind the janitor.
        ends = datetime.datetime.fromisoformat(active["ends_at"].replace("Z", "+00:00"))
        cloud_end = datetime.datetime.fromisoformat(held[0]["deleteAtTime"].replace("Z", "+00:00"))
        self.assertLess(abs((cloud_end - ends).total_seconds()), 2)
        inserts = [r for r in log_since(seq) if r.get("route") == "reservations.insert"]
        self.assertEqual([r["path"].split("/zones/")[1].split("/")[0] for r in inserts],
                         ZONES3[:2], "zone a first, then zone b")
        self.service.request("DELETE", "/reservations/" + body["id"])
        self.wait_reservation(body["id"], "cancelled")
        self.assertEqual(emu_reservations(name=self.cloud_name(body["id"])), [])

    def test_every_zone_exhausted_fails_with_every_reason_and_holds_nothing(self):
        set_capacity(ZONES_ALL, 0)
        body = self.reserve(count=2)  # the provider's zones, in both regions
        failed = self.wait_reservation(body["id"], "failed", "active")
        self.assertEqual(failed["state"], "failed", failed)
        for zone in ZONES_ALL:
            self.assertIn(zone + ":", failed["error_reason"])
        self.assertIn("ZONE_RESOURCE_POOL_EXHAUSTED", failed["error_reason"])
        self.assertEqual(emu_reservations(name=self.cloud_name(body["id"])), [],
                         "something is still reserved")

    def test_instances_consume_it_and_are_refused_once_it_is_full(self):
        body = self.reserve(count=2, zones=[ZONES3[2]])
        rid = body["id"]
        self.wait_reservation(rid, "active")
        a = self.create(reservation_id=rid)
        b = self.create(reservation_id=rid)
        for i in (a, b):
            running = self.wait_running(i["id"])
            self.assertEqual(running["zone"], ZONES3[2])
        name = self.cloud_name(rid)
        vms = [gce_service.emu_vm(i["id"]) for i in (a, b)]
        for vm in vms:
            self.assertTrue(vm["reservation"], vm)
            self.assertIn(name, str(vm["reservation"]))
        self.assertEqual(emu_reservations(name=name)[0]["inUseCount"], 2)
        self.assertEqual(self.reservation(rid)["in_use"], 2)
        full = self.service.request("POST", "/instances", {"provider": "gce",
                                                           "image": "family/debian-12",
                                                           "reservation_id": rid})
        self.assertProblem(full, 409, "reservation_full")
        self.service.request("DELETE", "/instances/" + a["id"])
        self.wait_terminated(a["id"])
        wait_until(lambda: emu_reservations(name=name)[0]["inUseCount"] == 1, 30,
                   what="the slot to come back at the cloud")
        self.assertEqual(self.reservation(rid)["in_use"], 1)
        self.service.request("DELETE", "/instances/" + b["id"])
        self.wait_terminated(b["id"])
        self.service.request("DELETE", "/reservations/" + rid)
        self.wait_reservation(rid, "cancelled")
        self.assertEqual(emu_reservations(name=name), [])

    def test_cancel_by_tag_removes_every_match_in_every_zone_and_region(self):
        run = "r" + uuid.uuid4().hex[:10]
        spread = [ZONES3[0], ZONES3[2], "europe-west1-b"]
        mine = [self.reserve(count=1, zones=[z], tags={"run": run})["id"] for z in spread]
        keep = self.reserve(count=1, zones=[ZONES3[0]], tags={"run": run + "k"})["id"]
        for rid in mine + [keep]:
            self.wait_reservation(rid, "active")
        self.assertEqual(sorted(r["zone"] for rid in mine
                                for r in emu_reservations(name=self.cloud_name(rid))), sorted(spread))
        r = self.service.request("DELETE", "/reservations?tag.run=" + run)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(sorted(x["id"] for x in r.json()["reservations"]), sorted(mine))
        for rid in mine:
            self.wait_reservation(rid, "cancelled")
            self.assertEqual(emu_reservations(name=self.cloud_name(rid)), [])
        self.assertEqual(len(emu_reservations(name=self.cloud_name(keep))), 1)
        self.service.request("DELETE", "/reservations/" + keep)
        self.wait_reservation(keep, "cancelled")


class GceJanitor(ReservationCase):
    deployment = "jan-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "500ms",
                "reservation-unused-grace": "5s", "orphan-grace": "3s",
                "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        key, _ = make_key_file(SA_EMAIL)
        return {"gce": gce_section(credentials=key, zones=" ".join(ZONES3))}

    def janitor(self):
        return self.provider()["janitor"]

    def test_a_doubtful_view_releases_nothing(self):
        # Every reservations.list fails: the janitor cannot know what is at the cloud.
        fault = EMU.control("POST", "fail", {"count": None, "status": 503, "method": "GET",
                                             "path_regex": r"/zones/[^/]+/reservations$"})
        try:
            rid = self.reserve(count=1, zones=[ZONES3[1]])["id"]
            self.wait_reservation(rid, "active")
            wait_until(lambda: self.janitor()["frozen"], 30, what="the janitor to freeze")
            self.db.query("ALTER TABLE reservations DISABLE TRIGGER reservations_record_event")
            self.db.query(f"UPDATE reservations SET state = 'failed' WHERE id = '{rid}'")
            self.db.query("ALTER TABLE reservations ENABLE TRIGGER reservations_record_event")
            time.sleep(4)  # past the orphan grace, several passes
            self.assertTrue(self.janitor()["frozen"])
            self.assertEqual(len(emu_reservations(name=self.cloud_name(rid))), 1,
                             "released on a doubtful view")
            self.assertGreater(EMU.control("GET", "faults")["faults"][0]["fired"], 3)
        finally:
            EMU.control("DELETE", "faults")
        self.assertEqual(fault["kind"], "error")
        # Its view clear again, the janitor releases the orphan.
        wait_until(lambda: not emu_reservations(name=self.cloud_name(rid)), 30,
                   what="the orphan to be released once the listing works")
        self.assertFalse(self.janitor()["frozen"])

    def test_expired_unused_and_orphaned_go_and_a_fresh_one_stays(self):
        fresh = self.reserve(count=1, zones=[ZONES3[0]])["id"]
        expiring = self.reserve(count=1, zones=[ZONES3[1]])["id"]
        orphan = self.reserve(count=2, zones=[ZONES3[2]])["id"]
        for rid in (fresh, expiring, orphan):
            self.wait_reservation(rid, "active")
        inst = self.create(reservation_id=fresh)["id"]  # in use: never "unused"
        self.wait_running(inst)
        # Past its end (the cloud's backstop is later, so only the janitor can have done it).
        self.db.query("UPDATE reservations SET ends_at = now() - interval '1 second' "
                      f"WHERE id = '{expiring}'")
        # Forgotten by the database (a restore from an older backup, say): an orphan.
        self.db.query("ALTER TABLE reservations DISABLE TRIGGER reservations_record_event")
        self.db.query(f"UPDATE reservations SET state = 'failed' WHERE id = '{orphan}'")
        self.db.query("ALTER TABLE reservations ENABLE TRIGGER reservations_record_event")
        done = self.wait_reservation(expiring, "expired", timeout=30)
        self.assertEqual(done["cancel_reason"], "expired")
        self.assertEqual(emu_reservations(name=self.cloud_name(expiring)), [])
        wait_until(lambda: not emu_reservations(name=self.cloud_name(orphan)), 30,
                   what="the orphan to be released at the cloud")
        # Recorded once the cloud has confirmed the release, so a moment after it is gone.
        recorded = ("SELECT count(*) FROM reservation_events WHERE kind = 'orphan_cancelled' "
                    f"AND reservation_id = '{orphan}' AND zone = '{ZONES3[2]}'")
        wait_until(lambda: self.db.query(recorded) != "0", 10, what="the orphan's event")
        self.assertEqual(self.db.query(recorded), "1")
        # The fresh one, in use, is left alone through several passes.
        passes = self.janitor()["passes"]
        wait_until(lambda: self.janitor()["passes"] >= passes + 3, 30, what="3 janitor passes")
        self.assertEqual(self.reservation(fresh)["state"], "active")
        self.assertEqual(len(emu_reservations(name=self.cloud_name(fresh))), 1)
        # Once its instance is gone it stands unused, and goes after its grace.
        self.service.request("DELETE", "/instances/" + inst)
        self.wait_terminated(inst)
        unused = self.wait_reservation(fresh, "cancelled", timeout=30)
        self.assertEqual(unused["cancel_reason"], "unused")
        self.assertEqual(emu_reservations(name=self.cloud_name(fresh)), [])
        j = self.janitor()
        self.assertGreaterEqual(j["expired"], 1)
        self.assertGreaterEqual(j["unused"], 1)
        self.assertGreaterEqual(j["orphans_cancelled"], 1)
        self.assertFalse(j["frozen"])


class KillMidReservation(ReservationCase):
    """SIGKILL while the reservation is being made in its second zone: once cloudbrain is back,
    the reservation is active in exactly one zone and nothing else is held anywhere."""
    deployment = "kill-" + uuid.uuid4().hex[:8]
    settings = {"deployment": deployment, "janitor-interval": "500ms", "orphan-grace": "2s",
                "job-lease": "2s", "reconcile-interval": "1h"}

    @classmethod
    def service_providers(cls):
        key, _ = make_key_file(SA_EMAIL)
        return {"gce": gce_section(credentials=key, zones=" ".join(ZONES3))}

    def test_a_kill_in_the_middle_leaves_nothing_orphaned(self):
        set_capacity([ZONES3[0]], 0)
        EMU.control("POST", "config", {"reservation_create_delay": 3.0})
        try:
            seq = last_seq()
            rid = self.reserve(count=2, zones=ZONES3)["id"]
            name = self.cloud_name(rid)

            def inserting_in_b():
                return any(r.get("route") == "reservations.insert" and ZONES3[1] in r["path"]
                           for r in log_since(seq))
            wait_until(inserting_in_b, 30, interval=0.05, what="the insert in the second zone")
            self.service.kill()
            self.assertEqual(self.reservation_row_state(rid), "pending")
            self.service.start()
            active = self.wait_reservation(rid, "active", "failed", timeout=60)
            self.assertEqual(active["state"], "active", active)
            held = emu_reservations(name=name)
            self.assertEqual([r["zone"] for r in held], [active["zone"]], held)
            self.assertEqual(active["zone"], ZONES3[1], "the zone in flight was adopted")
            counters = EMU.control("GET", "counters")
            self.assertEqual(sum(n for k, n in counters["reservations_created"].items()
                                 if name in k), 1, counters["reservations_created"])
        finally:
            EMU.control("POST", "config", {"reservation_create_delay": 0.3})
            set_capacity(ZONES3, None)
        # Several janitor passes past the orphan grace find nothing to release.
        time.sleep(2.5)
        passes = self.provider()["janitor"]["passes"]
        wait_until(lambda: self.provider()["janitor"]["passes"] >= passes + 3, 30,
                   what="3 janitor passes")
        self.assertEqual(self.provider()["janitor"]["orphans_cancelled"], 0)
        self.assertEqual([r["zone"] for r in emu_reservations(name=name)], [ZONES3[1]])
        self.service.request("DELETE", "/reservations/" + rid)
        self.wait_reservation(rid, "cancelled")
        self.assertEqual(emu_reservations(name=name), [])

    def reservation_row_state(self, rid):
        return self.db.query(f"SELECT state FROM reservations WHERE id = '{rid}'")


if __name__ == "__main__":
    unittest.main()
