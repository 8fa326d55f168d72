"""The seed's lifecycle (create, run, read, list, delete) through the HTTP API on external
providers served by each example driver over the driver protocol: cloudbrain-pool-driver (C++,
on the SDK) and cloudbrain-exec-driver (Python), with zone fallback on capacity errors, typed
errors that fail a request for good, and capacity reservations."""

import ipaddress
import json
import os
import unittest

from cloudbrain_test import ServiceTestCase, wait_until
from drivers_support import (LAB_PASSWORD, exec_driver, pool_driver, provider_state,
                             write_pool, write_token_file)

POOL = [("10.20.0.11", "rack-1"), ("10.20.0.12", "rack-1"),
        ("10.20.0.21", "rack-2"), ("10.20.0.22", "rack-2"), ("10.20.0.23", "rack-2")]
LAB_NET = ipaddress.ip_network("198.51.100.0/24")


class DriverServiceTestCase(ServiceTestCase):
    # Two attempts: a create that finds no room anywhere is errored within seconds.
    settings = {"driver-heartbeat": "500ms", "log-level": "info", "job-max-attempts": "2"}

    @classmethod
    def start_driver(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        try:
            cls.token_file, _ = write_token_file(cls.service)
            cls.driver = cls.start_driver().start()
            wait_until(lambda: provider_state(cls.service, cls.provider_name)["state"] == "ok", 30,
                       what="the driver to connect")
        except Exception:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        driver = getattr(cls, "driver", None)
        if driver:
            driver.stop()
        super().tearDownClass()

    def create_on(self, provider, **fields):
        body = {"provider": provider, "image": "debian-12",
                "public_ssh_key": "ssh-ed25519 AAAAC3Nz test@lab"}
        body.update(fields)
        r = self.service.request("POST", "/instances", body)
        self.assertEqual(r.status, 201, r)
        inst = r.json()
        # Whatever the test asserts, its machines go back for the next test.
        self.addCleanup(self.delete_and_wait, inst["id"])
        return inst

    def delete_and_wait(self, instance_id):
        self.service.request("DELETE", f"/instances/{instance_id}")
        wait_until(lambda: self.service.request("GET", f"/instances/{instance_id}").json()["state"]
                   in ("terminated", "errored"), 60, what=f"{instance_id} to be gone")


class PoolDriverLifecycle(DriverServiceTestCase):
    provider_name = "lab"
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1 rack-2",
                         "rate-limit": "1000", "max-in-flight": "50", "site": "lab-1",
                         "secret.bmc-password": "hunter2-bmc"}}

    @classmethod
    def start_driver(cls):
        cls.pool_file = write_pool(os.path.join(cls.service.workdir, "pool.txt"), POOL)
        cls.state_file = os.path.join(cls.service.workdir, "pool-state.json")
        return pool_driver(cls.service, cls.token_file, cls.pool_file, cls.state_file,
                           extra=["--max-in-flight", "8"])

    def leases(self):
        try:
            with open(self.state_file) as f:
                return json.load(f)["leases"]
        except FileNotFoundError:
            return {}

    def test_the_seed_lifecycle(self):
        inst = self.create_on("lab", tags={"team": "lab"})
        self.assertEqual(inst["state"], "creating")
        running = self.wait_state(inst["id"], "running", timeout=30)
        self.assertIn(running["ip_address"], {a for a, _ in POOL})
        self.assertEqual(running["upstream_id"], running["ip_address"])
        # rack-1 first, unless an earlier test filled it (then it is tried last for a while).
        self.assertIn(running["zone"], ("rack-1", "rack-2"))
        self.assertEqual(dict(POOL)[running["ip_address"]], running["zone"])
        self.assertEqual(running["public_ssh_key"], "ssh-ed25519 AAAAC3Nz test@lab")
        lease = self.leases()[running["ip_address"]]
        self.assertEqual(lease["name"], "cb-" + inst["id"])
        self.assertEqual(lease["labels"]["cloudbrain-instance"], inst["id"])
        self.assertEqual(lease["labels"]["team"], "lab")
        self.assertTrue(lease["ready"])

        r = self.service.request("GET", "/instances?provider=lab&tag.team=lab")
        self.assertEqual([i["id"] for i in r.json()["instances"]], [inst["id"]])

        r = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual((r.status, r.json()["state"]), (202, "terminating"), r)
        self.wait_state(inst["id"], "terminated", timeout=30)
        self.assertNotIn(running["ip_address"], self.leases())

    def test_a_full_zone_falls_back_to_the_next_and_no_room_fails(self):
        made = [self.create_on("lab") for _ in range(len(POOL))]
        running = [self.wait_state(i["id"], "running", timeout=30) for i in made]
        self.assertEqual(sorted(r["zone"] for r in running), ["rack-1"] * 2 + ["rack-2"] * 3)
        self.assertEqual(len({r["ip_address"] for r in running}), len(POOL))
        # No machine left: errored with every zone's reason, nothing leased twice.
        extra = self.create_on("lab")
        errored = self.wait_state(extra["id"], "errored", timeout=30)
        self.assertIn("no zone had capacity", errored["error_reason"])
        self.assertIn("rack-1", errored["error_reason"])
        self.assertIn("rack-2", errored["error_reason"])
        self.assertEqual(len(self.leases()), len(POOL))
        for i in made:
            self.delete_and_wait(i["id"])
        self.assertEqual(self.leases(), {})

    def test_an_instance_launches_into_a_reservation(self):
        r = self.service.request("POST", "/reservations",
                                 {"provider": "lab", "count": 2, "zones": ["rack-2"],
                                  "duration_minutes": 30, "tags": {"run": "pool-res"}})
        self.assertEqual(r.status, 201, r)
        res = r.json()

        def active():
            got = self.service.request("GET", f"/reservations/{res['id']}").json()
            return got if got["state"] == "active" else None
        held = wait_until(active, 30, what="the reservation to be active")
        self.assertEqual(held["zone"], "rack-2")
        inst = self.create_on("lab", reservation_id=res["id"])
        running = self.wait_state(inst["id"], "running", timeout=30)
        self.assertEqual(running["zone"], "rack-2")
        self.assertEqual(self.leases()[running["ip_address"]]["reservation"],
                         "cbr-" + res["id"])
        self.service.request("DELETE", f"/instances/{inst['id']}")
        self.wait_state(inst["id"], "terminated", timeout=30)
        r = self.service.request("DELETE", f"/reservations/{res['id']}")
        self.assertEqual(r.status, 202, r)

        def cancelled():
            got = self.service.request("GET", f"/reservations/{res['id']}").json()
            return got["state"] == "cancelled"
        wait_until(cancelled, 30, what="the reservation to be cancelled")
        with open(self.state_file) as f:
            self.assertEqual(json.load(f)["reservations"], {})

    def test_providers_shows_the_connection(self):
        p = provider_state(self.service, "lab")
        self.assertEqual((p["type"], p["state"]), ("external", "ok"))
        self.assertEqual(p["zones"], ["rack-1", "rack-2"])
        self.assertEqual(p["details"], {"driver": "pool", "connections": 1, "capacity": 8})

        # A reconciler pass that ran before the driver connected has run again since.
        def no_warning():
            ready = self.service.request("GET", "/readyz", auth=False).json()
            return not any("lab" in w for w in ready.get("warnings", []))
        wait_until(no_warning, 10, what="/readyz without a warning about lab")

    def test_the_driver_saw_its_configuration_and_secret_only_when_asked(self):
        inst = self.create_on("lab")
        self.wait_state(inst["id"], "running", timeout=30)
        self.service.request("DELETE", f"/instances/{inst['id']}")
        self.wait_state(inst["id"], "terminated", timeout=30)
        log = self.service.log_tail(2000)
        self.assertIn("driver fetched a provider's secret", log)
        self.assertNotIn("hunter2-bmc", "\n".join(self.service.log_lines()))
        self.assertNotIn("hunter2-bmc", self.driver.log_text())


class ExecDriverLifecycle(DriverServiceTestCase):
    provider_name = "lab"

    @classmethod
    def service_providers(cls):
        # The secret comes from a file (@/path), as an operator would keep it.
        secret_dir = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"cb-lab-{os.getpid()}")
        os.makedirs(secret_dir, exist_ok=True)
        cls.secret_file = os.path.join(secret_dir, "lab-password")
        with open(cls.secret_file, "w") as f:
            f.write(LAB_PASSWORD + "\n")
        return {"lab": {"type": "external", "driver": "lab", "zones": "zone-a zone-b",
                        "capacity": "2", "secret.lab-password": "@" + cls.secret_file},
                "lab-locked": {"type": "external", "driver": "lab", "zones": "zone-a",
                               "secret.lab-password": "wrong"}}

    @classmethod
    def start_driver(cls):
        cls.lab_state = os.path.join(cls.service.workdir, "lab-state.json")
        cls.journal = os.path.join(cls.service.workdir, "exec-journal.json")
        return exec_driver(cls.service, cls.token_file, cls.journal, cls.lab_state)

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        os.unlink(cls.secret_file)
        os.rmdir(os.path.dirname(cls.secret_file))

    def lab(self):
        with open(self.lab_state) as f:
            return json.load(f)

    def test_the_seed_lifecycle(self):
        inst = self.create_on("lab", tags={"team": "lab"})
        running = self.wait_state(inst["id"], "running", timeout=30)
        self.assertIn(ipaddress.ip_address(running["ip_address"]), LAB_NET)
        self.assertEqual(running["upstream_id"], "lab-" + running["ip_address"])
        self.assertIn(running["zone"], ("zone-a", "zone-b"))
        name = "cb-" + inst["id"]
        self.assertEqual(self.lab()["machines"][name]["address"], running["ip_address"])
        self.assertEqual(self.lab()["made"][name], 1)
        r = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual(r.status, 202, r)
        self.wait_state(inst["id"], "terminated", timeout=30)
        self.assertNotIn(name, self.lab()["machines"])

    def test_capacity_moves_to_the_next_zone(self):
        made = [self.create_on("lab") for _ in range(3)]
        running = [self.wait_state(i["id"], "running", timeout=30) for i in made]
        self.assertEqual(sorted(r["zone"] for r in running), ["zone-a", "zone-a", "zone-b"])
        for i in made:
            self.service.request("DELETE", f"/instances/{i['id']}")
        for i in made:
            self.wait_state(i["id"], "terminated", timeout=30)

    def test_an_auth_error_fails_the_request_with_the_drivers_message(self):
        inst = self.create_on("lab-locked")
        errored = self.wait_state(inst["id"], "errored", timeout=30)
        self.assertEqual(errored["error_reason"], "the lab refused the password")
        attempts = self.db.query(
            f"SELECT attempts FROM jobs WHERE instance_id = '{inst['id']}' "
            "AND kind = 'create_instance'")
        self.assertEqual(attempts, "1", "an auth error is not retried")

    def test_the_secret_file_is_read_but_never_logged(self):
        log = "\n".join(self.service.log_lines())
        self.assertNotIn(LAB_PASSWORD, log)
        self.assertNotIn(LAB_PASSWORD, self.driver.log_text())


if __name__ == "__main__":
    unittest.main()
