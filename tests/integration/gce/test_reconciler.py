"""The reconciler against the GCE emulator: orphans of this deployment are deleted once past
their grace (and recorded), anything else is never touched, a listing that fails part of the
way deletes nothing and says so, a VM deleted behind cloudbrain's back is reported, and a delete
the cloud keeps refusing is retried (visible as stuck) until it goes through.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import datetime
import time
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

    def test_orphans_past_their_grace_are_deleted_and_nothing_else_is(self):
        ours = {"cloudbrain-deployment": self.deployment}
        stray_id = str(uuid.uuid4())
        self.plant("orphan-old", dict(ours), age=3600)
        self.plant("orphan-young", dict(ours, **{"cloudbrain-instance": stray_id}), age=0)
        self.plant("theirs", {"cloudbrain-deployment": "another-deployment"}, age=3600)
        self.plant("unlabelled", {}, age=3600, zone=ZONES[1])
        before = self.reconciler()["orphans_deleted"]

        wait_until(lambda: emu_instances(name="orphan-old") == [], 20, interval=0.2,
                   what="the old orphan to be deleted")
        # The young one waits out its grace: still there one grace period after it was made,
        # minus a little, then gone.
        planted = time.monotonic()
        self.assertTrue(emu_instances(name="orphan-young"), "deleted before its grace")
        wait_until(lambda: emu_instances(name="orphan-young") == [], GRACE + 15, interval=0.2,
                   what="the young orphan to be deleted after its grace")
        self.assertGreaterEqual(time.monotonic() - planted, GRACE - 3)

        self.wait_passes(3)
        self.assertTrue(emu_instances(name="theirs"), "another deployment's VM was touched")
        self.assertTrue(emu_instances(name="unlabelled"), "an unlabelled VM was touched")
        deletes = EMU.control("GET", "counters")["delete_calls"]
        self.assertNotIn("theirs", deletes)
        self.assertNotIn("unlabelled", deletes)
        self.assertEqual(self.reconciler()["orphans_deleted"], before + 2)
        events = {e[0]: e for e in self.orphan_events()}
        self.assertEqual(events["orphan-old"][1:3], ["-", "terminated"])
        self.assertIn("no instance behind it", events["orphan-old"][3])
        self.assertEqual(events["orphan-young"][1], "-")  # its label names no instance here
        with open(self.service.log_path, errors="replace") as f:
            self.assertIn('"msg":"orphan VM deleted"', f.read())

    def test_a_listing_that_fails_part_way_deletes_nothing(self):
        ours = {"cloudbrain-deployment": self.deployment}
        self.plant("doubt-a", dict(ours), age=3600, zone=ZONES[0])
        self.plant("doubt-b", dict(ours), age=3600, zone=ZONES[1])
        # Zone a lists fine, zone b's listing fails: the view is partial.
        EMU.control("POST", "fail", {"count": None, "status": 503, "method": "GET",
                                     "path_regex": "/zones/%s/instances$" % ZONES[1]})
        try:
            wait_until(lambda: self.reconciler()["frozen"], 30, interval=0.2,
                       what="the reconciler to freeze")
            r = self.service.request("GET", "/readyz", auth=False)
            self.assertEqual(r.status, 200, r)  # the API still serves
            self.assertTrue(any("orphan collection frozen" in w for w in r.json()["warnings"]),
                            r.json())
            time.sleep(3)
            self.assertTrue(emu_instances(name="doubt-a"), "deleted on a partial view")
            self.assertTrue(emu_instances(name="doubt-b"), "deleted on a partial view")
            deletes = EMU.control("GET", "counters")["delete_calls"]
            self.assertNotIn("doubt-a", deletes)
        finally:
            EMU.control("DELETE", "faults")
        wait_until(lambda: not emu_instances(name="doubt-a") and not emu_instances(name="doubt-b"),
                   30, interval=0.2, what="the orphans to go once the view is whole")
        self.assertFalse(self.reconciler()["frozen"])
        r = self.service.request("GET", "/readyz", auth=False)
        self.assertNotIn("warnings", r.json())
        with open(self.service.log_path, errors="replace") as f:
            self.assertIn("reconciler view doubtful", f.read())

    def test_a_vm_deleted_behind_our_back_is_reported(self):
        inst = self.create()
        self.wait_running(inst["id"])
        EMU.control("POST", "tokens", {"token": "behind-our-back"})
        status, body, _ = EMU.request(
            "DELETE", "/compute/v1/projects/%s/zones/%s/instances/cb-%s"
            % (PROJECT, self.get(inst["id"])["zone"], inst["id"]),
            headers={"Authorization": "Bearer behind-our-back"})
        self.assertEqual(status, 200, body)

        def errored():
            i = self.get(inst["id"])
            return i if i["state"] == "errored" else None
        i = wait_until(errored, 30, interval=0.2, what="the instance to be reported")
        self.assertEqual(i["error_reason"], "vanished at the provider")
        self.assertGreaterEqual(self.reconciler()["vanished"], 1)
        states = self.db.query("SELECT string_agg(to_state::text, ' ' ORDER BY id) FROM "
                               "instance_events WHERE instance_id = '%s'" % inst["id"])
        self.assertTrue(states.endswith("running errored"), states)

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

    def test_a_delete_while_creating_leaves_nothing_at_the_cloud(self):
        ids = [self.create()["id"] for _ in range(5)]
        for i in ids:
            self.assertEqual(self.service.request("DELETE", "/instances/" + i).status, 202)
        for i in ids:
            self.wait_terminated(i)
        time.sleep(1)
        for i in ids:
            self.assertIsNone(emu_vm(i))


if __name__ == "__main__":
    unittest.main()
