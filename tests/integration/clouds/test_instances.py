"""What every cloud must do for instances, through the real binary against the cloud's emulator
(tests/support/<cloud>_fixture.py): the lifecycle with exactly one VM per instance, zone
fallback and avoidance, every zone out, faults and lost answers without a duplicate, 100 creates
while the cloud throttles and loses answers, and the reconciler's orphans and vanished VMs.
Every class here runs once per cloud, as <Class>_<cloud>.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import time
import unittest
import uuid

from cloud_fixture import SSH_KEY, scenarios
from cloudbrain_test import wait_until


class Lifecycle:
    # A create that no zone has room for is retried a few times, then errored.
    settings = {"job-max-attempts": "4"}

    def test_instance_runs_with_the_clouds_address_then_is_deleted(self):
        inst = self.create(public_ssh_key=SSH_KEY, tags={"team": "infra", "run": "lifecycle"})
        self.assertEqual(inst["state"], "creating")
        running = self.wait_running(inst["id"])
        vm = self.cloud.vm(inst["id"])
        self.assertIsNotNone(vm, "no VM at the cloud")
        self.assertTrue(vm["running"], vm)
        self.assertEqual(running["ip_address"], vm["ip"])
        self.assertEqual(running["upstream_id"], vm["id"])
        self.assertIn(running["zone"], self.cloud.zones[:2])
        self.assertEqual(vm["zone"], running["zone"])
        self.assertEqual(vm["machine_type"], self.cloud.machine_types["standard"])
        self.assertIsNotNone(vm["deployment"])
        self.assertEqual(vm["tags"], {"team": "infra", "run": "lifecycle"})

        r = self.service.request("DELETE", "/instances/" + inst["id"])
        self.assertEqual(r.status, 202, r)
        self.wait_terminated(inst["id"])
        self.assertIsNone(self.cloud.vm(inst["id"]), "the VM is still at the cloud")
        self.assertEqual(self.cloud.launches(inst["id"]), 1)

    def test_premium_uses_its_machine_type(self):
        inst = self.create(instance_type="premium")
        self.wait_running(inst["id"])
        self.assertEqual(self.cloud.vm(inst["id"])["machine_type"],
                         self.cloud.machine_types["premium"])

    def test_exhausted_zone_falls_back_to_the_next_and_is_then_avoided(self):
        zones = self.cloud.zones
        self.cloud.set_capacity([zones[0]], 0)
        try:
            seq = self.cloud.seq()
            first = self.create(tags={"run": "fallback"})
            running = self.wait_running(first["id"])
            self.assertEqual(running["zone"], zones[1])
            self.assertEqual(self.cloud.vm(first["id"])["zone"], zones[1])
            # The next create of that type goes straight to the zone with room.
            second = self.create(tags={"run": "fallback"})
            self.assertEqual(self.wait_running(second["id"])["zone"], zones[1])
            self.assertEqual(self.cloud.create_zones_since(seq), [zones[0], zones[1], zones[1]])
        finally:
            self.cloud.set_capacity([zones[0]], None)

    def test_no_zone_with_capacity_is_errored_with_every_zones_reason(self):
        zones = self.cloud.zones[:2]
        self.cloud.set_capacity(zones, 0)
        try:
            inst = self.create(instance_type="premium")
            errored = self.wait_settled(inst["id"])
            self.assertEqual(errored["state"], "errored", errored)
            reason = errored["error_reason"]
            for z in zones:
                self.assertIn(z, reason)
            self.assertIn(self.cloud.capacity_reason, reason)
            self.assertIsNone(self.cloud.vm(inst["id"]))
        finally:
            self.cloud.set_capacity(zones, None)

    def test_faults_and_lost_answers_never_double_a_vm(self):
        run = "faults-" + uuid.uuid4().hex[:8]
        fired_before = self.cloud.faults_fired()
        dedup_before = self.cloud.dedup_hits()
        self.cloud.fail(3, status=503)
        self.cloud.lose_create_answers(3)
        self.cloud.reset_connections(2)
        try:
            ids = [self.create(tags={"run": run})["id"] for _ in range(12)]
            for i in ids:
                self.wait_running(i)
        finally:
            self.cloud.clear_faults()
        vms = [v for v in self.cloud.vms() if v["tags"].get("run") == run]
        self.assertEqual(sorted(v["instance"] for v in vms), sorted(ids))
        self.assertEqual([self.cloud.launches(i) for i in ids], [1] * len(ids))
        fired = self.cloud.faults_fired()[len(fired_before):]
        self.assertEqual(fired.count("error"), 3, fired)
        self.assertEqual(fired.count("drop-after"), 3, fired)
        self.assertEqual(fired.count("drop"), 2, fired)
        # The creates whose answers were lost were sent again with the same idempotency key.
        self.assertGreaterEqual(self.cloud.dedup_hits() - dedup_before, 3)

    def test_a_delete_while_creating_leaves_nothing_at_the_cloud(self):
        ids = [self.create()["id"] for _ in range(5)]
        for i in ids:
            self.assertEqual(self.service.request("DELETE", "/instances/" + i).status, 202)
        for i in ids:
            self.wait_terminated(i)
        time.sleep(1)
        for i in ids:
            self.assertIsNone(self.cloud.vm(i))


class ManyUnderThrottling:
    """100 creates while the cloud throttles, fails and loses answers: all run, none twice;
    then all are deleted and the cloud holds none of them."""

    COUNT = 100
    cloud_sections = {"main": {"rate-limit": "100", "max-in-flight": "50"}}

    def test_100_creates_through_throttling_and_lost_answers(self):
        run = "many-" + uuid.uuid4().hex[:8]
        self.cloud.throttle(10, retry_after=1)
        self.cloud.lose_create_answers(10)
        self.cloud.fail(5)
        started = time.monotonic()
        try:
            with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
                ids = list(pool.map(lambda _: self.create(tags={"run": run})["id"],
                                    range(self.COUNT)))
            wait_until(lambda: self.count_state("running", run, self.COUNT), 90, interval=0.5,
                       what="%d instances running" % self.COUNT)
        finally:
            self.cloud.clear_faults()
        up = time.monotonic() - started
        vms = [v for v in self.cloud.vms() if v["tags"].get("run") == run]
        self.assertEqual(sorted(v["instance"] for v in vms), sorted(ids))
        launches = [self.cloud.launches(i) for i in ids]
        self.assertEqual(launches, [1] * self.COUNT, "duplicates at the cloud")
        fired = self.cloud.faults_fired()
        self.assertGreaterEqual(fired.count("throttle"), 10, "the throttling never happened")
        self.assertGreater(self.provider()["rate_limit_waits"], 0)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            codes = set(pool.map(
                lambda i: self.service.request("DELETE", "/instances/" + i).status, ids))
        self.assertEqual(codes, {202})
        wait_until(lambda: self.count_state("terminated", run, self.COUNT), 90, interval=0.5,
                   what="%d instances terminated" % self.COUNT)
        down = time.monotonic() - started
        wait_until(lambda: not [v for v in self.cloud.vms() if v["tags"].get("run") == run], 30,
                   what="the cloud to hold none of them")
        print("\n%d VMs at the %s emulator through throttling and lost answers: running after "
              "%.1fs, terminated after %.1fs" % (self.COUNT, self.cloud.name, up, down))


class Reconciler:
    GRACE = 6  # seconds
    deployment = "recon-" + uuid.uuid4().hex[:8]
    settings = {"reconcile-interval": "1s", "orphan-grace": "%ds" % GRACE,
                "deployment": deployment}

    def reconciler(self):
        return self.provider()["reconciler"]

    def wait_passes(self, n=2):
        start = self.reconciler()["passes"]
        wait_until(lambda: self.reconciler()["passes"] >= start + n, 30, interval=0.2,
                   what="%d reconciler passes" % n)

    def test_orphans_past_their_grace_are_deleted_and_nothing_else_is(self):
        old = self.cloud.plant_vm("orphan-old", deployment=self.deployment, age=3600)
        young = self.cloud.plant_vm("orphan-young", deployment=self.deployment,
                                    instance_id=str(uuid.uuid4()), age=0)
        theirs = self.cloud.plant_vm("theirs", deployment="another-deployment", age=3600)
        unmarked = self.cloud.plant_vm("unmarked", age=3600, zone=self.cloud.zones[1])
        before = self.reconciler()["orphans_deleted"]
        planted = time.monotonic()
        wait_until(lambda: not self.cloud.vm_exists(old), 20, interval=0.2,
                   what="the old orphan to be deleted")
        self.assertTrue(self.cloud.vm_exists(young), "deleted before its grace")
        wait_until(lambda: not self.cloud.vm_exists(young), self.GRACE + 15, interval=0.2,
                   what="the young orphan to be deleted after its grace")
        self.assertGreaterEqual(time.monotonic() - planted, self.GRACE - 3)
        self.wait_passes(3)
        self.assertTrue(self.cloud.vm_exists(theirs), "another deployment's VM was touched")
        self.assertTrue(self.cloud.vm_exists(unmarked), "an unmarked VM was touched")
        self.assertEqual(self.reconciler()["orphans_deleted"], before + 2)
        events = self.db.query("SELECT count(*) FROM instance_events WHERE kind = 'orphan_deleted'")
        self.assertEqual(int(events), before + 2)

    def test_a_listing_that_fails_part_way_deletes_nothing(self):
        self.cloud.fail_listings("instances")
        try:
            wait_until(lambda: self.reconciler()["frozen"], 30, interval=0.2,
                       what="the reconciler to freeze")
            # Planted only once every listing fails: a pass that began before the fault could
            # otherwise see them whole, and rightly delete them.
            a = self.cloud.plant_vm("doubt-a", deployment=self.deployment, age=3600,
                                    zone=self.cloud.zones[0])
            b = self.cloud.plant_vm("doubt-b", deployment=self.deployment, age=3600,
                                    zone=self.cloud.zones[1])
            r = self.service.request("GET", "/readyz", auth=False)
            self.assertEqual(r.status, 200, r)  # the API still serves
            self.assertTrue(any("orphan collection frozen" in w for w in r.json()["warnings"]),
                            r.json())
            time.sleep(3)
            self.assertTrue(self.cloud.vm_exists(a), "deleted on a partial view")
            self.assertTrue(self.cloud.vm_exists(b), "deleted on a partial view")
        finally:
            self.cloud.clear_faults()
        wait_until(lambda: not self.cloud.vm_exists(a) and not self.cloud.vm_exists(b), 30,
                   interval=0.2, what="the orphans to go once the view is whole")
        self.assertFalse(self.reconciler()["frozen"])

    def test_a_vm_deleted_behind_our_back_is_reported(self):
        inst = self.create()
        self.wait_running(inst["id"])
        self.cloud.delete_behind_our_back(inst["id"])

        def errored():
            i = self.get(inst["id"])
            return i if i["state"] == "errored" else None
        i = wait_until(errored, 30, interval=0.2, what="the instance to be reported")
        self.assertEqual(i["error_reason"], "vanished at the provider")
        self.assertGreaterEqual(self.reconciler()["vanished"], 1)


scenarios(globals(), Lifecycle, ManyUnderThrottling, Reconciler)

if __name__ == "__main__":
    unittest.main()
