"""Nothing lost, nothing doubled, nothing leaked, on every cloud: cloudbrain is SIGKILLed at
random moments while it creates and then deletes 300 VMs at the cloud's emulator (its own
process, slowed down so that every kill lands while work is in flight). At the end every
instance is where it should be and the cloud holds exactly the VMs it should: one per live
instance, none after the deletes. Prints the figures (instances, kills, duplicates, orphans,
time to converge). Runs once per cloud, as KillDuringCreateAndDelete_<cloud>.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import os
import time
import unittest
import uuid

from chaos import Client, Killer, wait_all
from cloud_fixture import scenarios
from cloudbrain_test import Database, Service, wait_until

COUNT = int(os.environ.get("CHAOS_COUNT", "300"))  # smaller only by hand
MIN_KILLS = 5


class KillDuringCreateAndDelete:
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # One service per test, made by the test: it is killed and restarted.
        cls.cloud = cls.fixture_class().start()

    @classmethod
    def tearDownClass(cls):
        cls.cloud.stop()

    def ours(self, deployment):
        return [v for v in self.cloud.vms() if v["deployment"] == deployment]

    def check_exactly_one_vm_each(self, deployment, ids):
        vms = self.ours(deployment)
        held = [v["instance"] for v in vms]
        duplicates = len(held) - len(set(held))
        twice = [i for i in ids if self.cloud.launches(i) > 1]
        orphans = sorted(set(held) - set(ids), key=str)
        missing = sorted(set(ids) - set(held))
        self.assertEqual(duplicates, 0, "VMs made twice: %d" % duplicates)
        self.assertEqual(twice, [], "instances launched more than once")
        self.assertEqual(orphans, [], "VMs without an instance")
        self.assertEqual(missing, [], "instances without a VM")
        return duplicates + len(twice), len(orphans)

    def test_300_creates_and_deletes_with_sigkills(self):
        deployment = "chaos-" + uuid.uuid4().hex[:8]
        db = Database()
        self.addCleanup(db.drop)
        section = self.cloud.section(**{"rate-limit": "400", "max-in-flight": "100"},
                                     **self.cloud.many_vms_settings)
        service = Service(db, providers={"main": section}, env=self.cloud.service_env(),
                          settings={"deployment": deployment,
                                    # A dead process's jobs come back quickly; the SIGKILLs cost
                                    # attempts, so allow more.
                                    "job-lease": "2s", "job-max-attempts": "30",
                                    "reconcile-interval": "2s", "orphan-grace": "20s"})
        service.start()
        self.addCleanup(service.stop)
        service.token  # made now, while everything is up
        client = Client(service)
        # A cloud slow enough that every kill lands while work is in flight.
        self.cloud.slow_down()
        self.addCleanup(self.cloud.speed_up)

        # --- creates, killed at random moments
        # Work left: instances not yet asked for, or asked for and not yet running.
        not_running = lambda: COUNT - int(db.query(  # noqa: E731
            "SELECT count(*) FROM instances WHERE state = 'running'"))
        killer = Killer(service, MIN_KILLS + 2, not_running)
        started = time.monotonic()
        killer.start()
        keys = [str(uuid.uuid4()) for _ in range(COUNT)]

        def create(key):
            return client.call("POST", "/instances", {"provider": "main",
                                                      "image": self.cloud.image,
                                                      "tags": {"run": deployment}},
                               headers={"Idempotency-Key": key}).json()["id"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(create, keys))
        killer.join(120)
        self.assertIsNone(killer.failure)
        # Every kill counted here landed while work was left (the killer checks first).
        self.assertGreaterEqual(killer.done, MIN_KILLS, killer.left_at_kill)
        create_kills = killer.left_at_kill
        self.assertEqual(len(set(ids)), COUNT, "an Idempotency-Key replay made a second instance")
        self.assertEqual(db.count_rows("instances")["instances"], COUNT)

        wait_all(db, client, deployment, "running", COUNT, 300)
        up_converged = time.monotonic() - killer.last_restart
        up_total = time.monotonic() - started
        dup_up, orphans_up = self.check_exactly_one_vm_each(deployment, ids)

        # --- deletes, killed the same way
        not_terminated = lambda: int(db.query(  # noqa: E731
            "SELECT count(*) FROM instances WHERE state <> 'terminated'"))
        killer = Killer(service, MIN_KILLS + 2, not_terminated)
        started = time.monotonic()
        killer.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: client.call("DELETE", "/instances/" + i), ids))
        killer.join(120)
        self.assertIsNone(killer.failure)
        self.assertGreaterEqual(killer.done, MIN_KILLS, killer.left_at_kill)

        wait_all(db, client, deployment, "terminated", COUNT, 300)
        down_converged = time.monotonic() - killer.last_restart
        down_total = time.monotonic() - started
        wait_until(lambda: self.ours(deployment) == [], 30, interval=0.5,
                   what="the cloud to hold none of our VMs")
        orphan_events = int(db.query("SELECT count(*) FROM instance_events "
                                     "WHERE kind = 'orphan_deleted'"))
        print("\nchaos (%s): instances not yet running at each kill: %s; not yet terminated: %s"
              % (self.cloud.name, create_kills, killer.left_at_kill))
        print("chaos (%s): %d instances, %d kills creating + %d deleting, %d duplicate VMs, "
              "%d orphans left, %d orphans deleted by the reconciler; all running %.1fs after "
              "the last restart (%.1fs in all), all terminated %.1fs after the last restart "
              "(%.1fs in all)" % (self.cloud.name, COUNT, len(create_kills), killer.done, dup_up,
                                  orphans_up, orphan_events, up_converged, up_total,
                                  down_converged, down_total))


scenarios(globals(), KillDuringCreateAndDelete)

if __name__ == "__main__":
    unittest.main()
