"""The pool driver SIGKILLed while 50 creates are in flight at it (each held by a four-second
prepare hook), then started again: the hub sends the operations it lost again on the new
connection, under the same idempotency keys, and all 50 instances end `running` with one
machine each: no machine leased twice, none lost, none left over."""

import json
import os
import signal
import threading
import time
import unittest

from cloudbrain_test import ServiceTestCase, wait_until
from drivers_support import pool_driver, provider_state, write_pool, write_token_file

INSTANCES = 50
POOL = [(f"10.40.{i // 200}.{i % 200 + 1}", "rack-1" if i % 2 == 0 else "rack-2")
        for i in range(60)]


class KillTheDriverWithCreatesInFlight(ServiceTestCase):
    settings = {"driver-heartbeat": "500ms", "log-level": "info"}
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1 rack-2",
                         "rate-limit": "1000", "max-in-flight": "100"}}

    def start_driver(self):
        driver = pool_driver(self.service, self.token_file, self.pool_file, self.state_file,
                             extra=["--max-in-flight", "64", "--prepare", "sleep 4"])
        return driver.start()

    def leases(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)["leases"]
        except (FileNotFoundError, ValueError):
            return {}

    def test_all_fifty_run_with_one_machine_each(self):
        started = time.monotonic()
        self.token_file, _ = write_token_file(self.service)
        self.pool_file = write_pool(os.path.join(self.service.workdir, "pool.txt"), POOL)
        self.state_file = os.path.join(self.service.workdir, "state.json")
        driver = self.start_driver()
        try:
            wait_until(lambda: provider_state(self.service, "lab")["state"] == "ok", 20,
                       what="the driver to connect")
            ids = []
            lock = threading.Lock()

            def post(n):
                for _ in range(n):
                    inst = self.create(provider="lab", image="debian-12")
                    with lock:
                        ids.append(inst["id"])
            threads = [threading.Thread(target=post, args=(10,)) for _ in range(5)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            self.assertEqual(len(ids), INSTANCES)

            # Kill it once most creates are at it: leased, their prepare hooks running.
            wait_until(lambda: len(self.leases()) >= 40, 20, interval=0.05,
                       what="40 creates in flight at the driver")
            in_flight = sum(1 for l in self.leases().values() if not l["ready"])
            self.assertGreaterEqual(in_flight, 30,
                                    "the creates should still be preparing when it is killed")
            driver.kill()
            self.assertEqual(driver.proc.returncode, -signal.SIGKILL)
            wait_until(lambda: provider_state(self.service, "lab")["state"] == "disconnected", 10,
                       what="the hub to notice")
            time.sleep(1)
            driver = self.start_driver()

            def all_running():
                states = {}
                for i in ids:
                    states[i] = self.service.request("GET", f"/instances/{i}").json()
                bad = [s for s in states.values() if s["state"] == "errored"]
                if bad:
                    raise AssertionError(f"errored: {bad[0]}")
                return states if all(s["state"] == "running" for s in states.values()) else None
            states = wait_until(all_running, 45, interval=0.5, what="all 50 instances running")

            addresses = [s["ip_address"] for s in states.values()]
            self.assertEqual(len(set(addresses)), INSTANCES, "a machine was handed out twice")
            self.assertTrue(set(addresses) <= set(dict(POOL)))
            leases = self.leases()
            self.assertEqual(len(leases), INSTANCES, f"{len(leases)} machines leased")
            self.assertEqual({l["name"] for l in leases.values()}, {"cb-" + i for i in ids})
            self.assertTrue(all(l["ready"] for l in leases.values()))
            for i, s in states.items():
                self.assertEqual(leases[s["ip_address"]]["name"], "cb-" + i)
            resent = [l for l in self.service.log_lines()
                      if "operation sent again after its connection dropped" in l]
            self.assertGreater(len(resent), 0, "no operation was sent again")
            print(f"\n{in_flight} creates were at the driver when it was killed; "
                  f"{len(resent)} operations sent again; all {INSTANCES} running after "
                  f"{time.monotonic() - started:.1f} s")
        finally:
            driver.stop()
        self.assertLess(time.monotonic() - started, 90)


if __name__ == "__main__":
    unittest.main()
