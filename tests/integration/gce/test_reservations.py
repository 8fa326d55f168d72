"""What is particular to capacity reservations on GCE, through the real binary against the GCE
emulator: specific reservations with Google's deleteAtTime as the backstop, consumed through
SPECIFIC_RESERVATION affinity, and cancel by tag across two regions. (Zone fallback, consumption,
the janitor and kills on every cloud: tests/integration/clouds/test_reservations.py.)

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import datetime
import unittest
import uuid

import gce_service
from cloudbrain_test import wait_until
from gce_service import SA_EMAIL, GceCase, gce_section, make_key_file

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

    def test_a_specific_reservation_with_googles_end_date_consumed_by_affinity(self):
        body = self.reserve(count=2, zones=[ZONES3[1]], duration_minutes=90, tags={"run": "g"})
        active = self.wait_reservation(body["id"], "active", "failed")
        self.assertEqual(active["state"], "active", active)
        held = emu_reservations(name=self.cloud_name(body["id"]))
        self.assertEqual(len(held), 1, held)
        # Specific: only VMs that name it can use it.
        self.assertTrue(held[0]["specificReservationRequired"])
        # The cloud's own end date is the backstop behind the janitor.
        ends = datetime.datetime.fromisoformat(active["ends_at"].replace("Z", "+00:00"))
        cloud_end = datetime.datetime.fromisoformat(held[0]["deleteAtTime"].replace("Z", "+00:00"))
        self.assertLess(abs((cloud_end - ends).total_seconds()), 2)
        # A VM launched into it names it through SPECIFIC_RESERVATION affinity.
        inst = self.create(reservation_id=body["id"])
        self.wait_running(inst["id"])
        vm = gce_service.emu_vm(inst["id"])
        self.assertIn(self.cloud_name(body["id"]), str(vm["reservation"]))
        self.assertEqual(emu_reservations(name=self.cloud_name(body["id"]))[0]["inUseCount"], 1)
        self.service.request("DELETE", "/instances/" + inst["id"])
        self.wait_terminated(inst["id"])
        self.service.request("DELETE", "/reservations/" + body["id"])
        self.wait_reservation(body["id"], "cancelled")
        self.assertEqual(emu_reservations(name=self.cloud_name(body["id"])), [])

    def test_cancel_by_tag_reaches_every_region(self):
        run = "r" + uuid.uuid4().hex[:10]
        spread = [ZONES3[0], "europe-west1-b"]
        mine = [self.reserve(count=1, zones=[z], tags={"run": run})["id"] for z in spread]
        for rid in mine:
            self.wait_reservation(rid, "active")
        r = self.service.request("DELETE", "/reservations?tag.run=" + run)
        self.assertEqual(r.status, 202, r)
        for rid in mine:
            self.wait_reservation(rid, "cancelled")
            self.assertEqual(emu_reservations(name=self.cloud_name(rid)), [])


if __name__ == "__main__":
    unittest.main()
