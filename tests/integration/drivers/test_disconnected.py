"""An external provider with no driver connected: its creates wait in `creating` (queued, no
attempt used, nothing errored), GET /providers says `disconnected` and /readyz warns but stays
200; when the driver connects they run, and when it goes the provider is disconnected again."""

import os
import time
import unittest

from cloudbrain_test import ServiceTestCase, wait_until
from drivers_support import pool_driver, provider_state, readyz, write_pool, write_token_file

POOL = [(f"10.30.0.{i}", "rack-1") for i in range(1, 6)]


class NoDriverConnected(ServiceTestCase):
    settings = {"driver-heartbeat": "500ms", "job-max-attempts": "2"}
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1",
                         "rate-limit": "1000", "max-in-flight": "20"},
                 "gce": {"type": "fake", "zones": "zone-a"}}

    def tearDown(self):
        driver = getattr(self, "driver", None)
        if driver:
            driver.stop()

    def test_creates_wait_until_a_driver_connects(self):
        p = provider_state(self.service, "lab")
        self.assertEqual(p["state"], "disconnected")
        self.assertEqual(p["details"]["connections"], 0)
        r = readyz(self.service)
        self.assertEqual(r.status, 200, r)
        warnings = r.json().get("warnings", [])
        self.assertTrue(any("provider lab: no driver 'pool' is connected" in w for w in warnings),
                        warnings)
        # The other provider works meanwhile.
        other = self.create(provider="gce")
        self.wait_state(other["id"], "running", timeout=20)

        made = [self.create(provider="lab") for _ in range(3)]
        # Longer than two attempts' backoff would take: they are still waiting, untouched.
        time.sleep(4)
        for inst in made:
            got = self.service.request("GET", f"/instances/{inst['id']}").json()
            self.assertEqual(got["state"], "creating", got)
            job = self.db.query(f"SELECT state, attempts FROM jobs WHERE instance_id = "
                                f"'{inst['id']}' AND kind = 'create_instance'")
            self.assertEqual(job, "queued|0", f"the job of a waiting create: {job}")

        token_file, _ = write_token_file(self.service)
        pool_file = write_pool(os.path.join(self.service.workdir, "pool.txt"), POOL)
        self.driver = pool_driver(self.service, token_file, pool_file,
                                  os.path.join(self.service.workdir, "state.json")).start()
        for inst in made:
            running = self.wait_state(inst["id"], "running", timeout=30)
            self.assertIn(running["ip_address"], dict(POOL))
        self.assertEqual(provider_state(self.service, "lab")["state"], "ok")
        r = readyz(self.service)
        self.assertEqual(r.status, 200, r)
        self.assertFalse(any("provider lab" in w for w in r.json().get("warnings", [])), r)

        # The driver goes: disconnected again, within a heartbeat timeout at most.
        self.driver.stop()
        wait_until(lambda: provider_state(self.service, "lab")["state"] == "disconnected", 10,
                   what="the provider to be disconnected")
        later = self.create(provider="lab")
        time.sleep(1.5)
        self.assertEqual(self.service.request("GET", f"/instances/{later['id']}").json()["state"],
                         "creating")


if __name__ == "__main__":
    unittest.main()
