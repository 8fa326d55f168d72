"""The reconciler against the GCE emulator: an orphan's deletion is recorded and logged, and a
delete the cloud keeps refusing is retried (visible as stuck) until it goes through. (Orphans,
partial listings and vanished VMs on every cloud: tests/integration/clouds/test_instances.py.)

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import datetime
import unittest
import uuid

import gce_service
from cloudbrain_test import wait_until
from gce_service import (PROJECT, SA_EMAIL, ZONES, GceCase, emu_instances, emu_vm, gce_section,
                         make_key_file)

GRACE = 6  # seconds


def setUpModule():
    global EMU
    EMU = gce_service.start_emulator()


def tearDownModule():
    gce_service.stop_emulator()


def ts(seconds_ago):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return t.isoformat(timespec="milliseconds")


class Reconciler(GceCase):
    deployment = "recon-" + uuid.uuid4().hex[:8]
    settings = {"reconcile-interval": "1s", "orphan-grace": "%ds" % GRACE,
                "deployment": deployment}

    @classmethod
    def service_providers(cls):
        key, _ = make_key_file(SA_EMAIL)
        return {"gce": gce_section(credentials=key)}

    def plant(self, name, labels, age, zone=ZONES[0]):
        EMU.control("POST", "instances", {"project": PROJECT, "zone": zone, "name": name,
                                          "labels": labels, "creationTimestamp": ts(age),
                                          "status": "RUNNING", "external": False})

    def reconciler(self):
        return self.provider()["reconciler"]

    def wait_passes(self, n=2):
        start = self.reconciler()["passes"]
        wait_until(lambda: self.reconciler()["passes"] >= start + n, 30, interval=0.2,
                   what="%d reconciler passes" % n)

    def orphan_events(self):
        out = self.db.query("SELECT vm_name || '|' || coalesce(instance_id::text, '-') || '|' || "
                            "to_state || '|' || reason FROM instance_events "
                            "WHERE kind = 'orphan_deleted' ORDER BY id")
        return [line.split("|") for line in out.splitlines() if line]

    def test_an_orphans_deletion_is_recorded_and_logged(self):
        self.plant("orphan-old", {"cloudbrain-deployment": self.deployment}, age=3600)
        wait_until(lambda: emu_instances(name="orphan-old") == [], 20, interval=0.2,
                   what="the old orphan to be deleted")
        wait_until(lambda: "orphan-old" in {e[0] for e in self.orphan_events()}, 10,
                   what="the orphan's event")
        events = {e[0]: e for e in self.orphan_events()}
        self.assertEqual(events["orphan-old"][1:3], ["-", "terminated"])
        self.assertIn("no instance behind it", events["orphan-old"][3])
        with open(self.service.log_path, errors="replace") as f:
            self.assertIn('"msg":"orphan VM deleted"', f.read())

    def test_a_delete_the_cloud_keeps_refusing_is_retried_until_it_works(self):
        inst = self.create()
        self.wait_running(inst["id"])
        EMU.control("POST", "fail", {"count": None, "status": 503, "method": "DELETE"})
        try:
            r = self.service.request("DELETE", "/instances/" + inst["id"])
            self.assertEqual(r.status, 202, r)
            wait_until(lambda: self.reconciler()["stuck_deletes"] >= 1, 60, interval=0.3,
                       what="the delete to show as stuck")
            self.assertEqual(self.get(inst["id"])["state"], "terminating")
            self.assertTrue(emu_vm(inst["id"]))
        finally:
            EMU.control("DELETE", "faults")
        self.wait_terminated(inst["id"], timeout=90)
        wait_until(lambda: emu_vm(inst["id"]) is None, 10, what="the VM to be gone")
        wait_until(lambda: self.reconciler()["stuck_deletes"] == 0, 10, interval=0.3,
                   what="the stuck count to clear")

if __name__ == "__main__":
    unittest.main()
