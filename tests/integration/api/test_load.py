"""500 concurrent creates through HTTP against the fake cloud: 500 distinct instances, each with
exactly one simulated VM, all running; then 500 deletes leave no VM behind."""

import concurrent.futures
import time
import unittest
import uuid

from cloudbrain_test import ServiceTestCase, wait_until

COUNT = 500
WORKERS = 100


class LoadTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                         "rate-limit": "5000", "max-in-flight": "200"}}

    def provider(self):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        found = [p for p in r.json()["providers"] if p["name"] == "gce"]
        self.assertEqual(len(found), 1, r.json())
        p = found[0]
        self.assertEqual(p["type"], "fake")
        self.assertEqual(p["zones"], ["zone-a", "zone-b"])
        self.assertIn(p["state"], ("ok", "degraded", "open"))
        return p

    def count(self, run, state):
        r = self.service.request("GET", f"/instances?tag.load={run}&state={state}&limit=1000",
                                 timeout=30)
        self.assertEqual(r.status, 200, r)
        self.assertIsNone(r.json()["next"])
        return {i["id"] for i in r.json()["instances"]}

    def run_all(self, fn, items):
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            return list(pool.map(fn, items, timeout=300))

    def test_500_concurrent_creates_then_deletes(self):
        run = uuid.uuid4().hex[:12]
        self.service.request("GET", "/instances")  # the token is verified once, up front
        self.assertEqual(self.provider()["details"]["vms"], 0)

        def create(n):
            return self.service.request(
                "POST", "/instances",
                {"provider": "gce", "image": f"image-{n}", "tags": {"load": run, "n": str(n)}},
                timeout=60)
        started = time.monotonic()
        responses = self.run_all(create, range(COUNT))
        bad = [r for r in responses if r.status != 201]
        self.assertEqual(bad, [], f"{len(bad)} creates failed")
        ids = {r.json()["id"] for r in responses}
        self.assertEqual(len(ids), COUNT, "ids are not distinct")
        self.assertEqual({r.json()["image"] for r in responses},
                         {f"image-{n}" for n in range(COUNT)})
        self.assertEqual(self.db.query(
            f"SELECT count(*) FROM instances WHERE tags->>'load' = '{run}'"), str(COUNT))
        print(f"\n{COUNT} creates accepted in {time.monotonic() - started:.1f}s", flush=True)

        running = wait_until(lambda: (lambda s: s if len(s) == COUNT else None)(
            self.count(run, "running")), 120, interval=0.5, what=f"{COUNT} instances running")
        self.assertEqual(running, ids)
        print(f"all running after {time.monotonic() - started:.1f}s", flush=True)

        # One simulated VM per instance, one create call each.
        details = wait_until(lambda: (lambda d: d if d["vms"] == COUNT else None)(
            self.provider()["details"]), 10, what="the fake to report the VMs")
        self.assertEqual(details["vms"], COUNT)
        self.assertEqual(details["creates"], COUNT)
        addresses = self.db.query(
            f"SELECT count(*) FROM instances WHERE tags->>'load' = '{run}' "
            "AND ip_address << '203.0.113.0/24' AND upstream_id IS NOT NULL")
        self.assertEqual(addresses, str(COUNT))
        jobs = self.db.query(
            "SELECT count(*) FROM jobs j JOIN instances i ON i.id = j.instance_id "
            f"WHERE i.tags->>'load' = '{run}' AND j.kind = 'create_instance' "
            "AND j.state = 'succeeded'")
        self.assertEqual(jobs, str(COUNT))

        def delete(i):
            return self.service.request("DELETE", f"/instances/{i}", timeout=60)
        started = time.monotonic()
        responses = self.run_all(delete, sorted(ids))
        bad = [r for r in responses if r.status != 202]
        self.assertEqual(bad, [], f"{len(bad)} deletes failed")
        self.assertTrue(all(r.json()["state"] in ("terminating", "terminated")
                            for r in responses))

        terminated = wait_until(lambda: (lambda s: s if len(s) == COUNT else None)(
            self.count(run, "terminated")), 120, interval=0.5,
            what=f"{COUNT} instances terminated")
        self.assertEqual(terminated, ids)
        print(f"all terminated after {time.monotonic() - started:.1f}s", flush=True)
        details = wait_until(lambda: (lambda d: d if d["vms"] == 0 else None)(
            self.provider()["details"]), 10, what="the fake to have no VM left")
        self.assertEqual(details["vms"], 0)
        self.assertEqual(details["creates"], COUNT)
        self.assertEqual(details["deletes"], COUNT)
        # Nothing is left queued or running.
        self.assertEqual(self.db.query(
            "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"), "0")
        self.assertIsNone(self.service.proc.poll())


class DeleteWhileCreatingTest(ServiceTestCase):
    """API.md: a delete that arrives while the instance is still `creating` must still end with
    nothing running at the cloud. Creates take a while at this fake, so deletes overtake them."""

    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "500ms",
                         "api-latency": "300ms", "rate-limit": "5000", "max-in-flight": "200"}}
    N = 60

    def test_deletes_overtaking_creates_leave_no_vm(self):
        run = uuid.uuid4().hex[:12]
        self.service.request("GET", "/instances")

        def create_then_delete(n):
            r = self.service.request("POST", "/instances",
                                     {"provider": "gce", "image": "i", "tags": {"load": run}},
                                     timeout=60)
            self.assertEqual(r.status, 201, r)
            i = r.json()["id"]
            if n % 3:
                time.sleep(0.05 * (n % 7))  # some right away, some a little later
            d = self.service.request("DELETE", f"/instances/{i}", timeout=60)
            self.assertEqual(d.status, 202, d)
            self.assertIn(d.json()["state"], ("terminating", "terminated"))
            return i
        with concurrent.futures.ThreadPoolExecutor(max_workers=30) as pool:
            ids = set(pool.map(create_then_delete, range(self.N), timeout=300))
        self.assertEqual(len(ids), self.N)

        def all_terminated():
            r = self.service.request(
                "GET", f"/instances?tag.load={run}&state=terminated&limit=1000")
            return {i["id"] for i in r.json()["instances"]} == ids
        wait_until(all_terminated, 120, interval=0.5, what="every instance to be terminated")

        def provider():
            r = self.service.request("GET", "/providers")
            return [p for p in r.json()["providers"] if p["name"] == "gce"][0]
        wait_until(lambda: provider()["details"]["vms"] == 0, 30,
                   what="no VM left at the fake cloud")
        # ... and none turns up later from a create that was still under way.
        time.sleep(3)
        details = provider()["details"]
        self.assertEqual(details["vms"], 0, details)
        self.assertEqual(details["creates"], details["deletes"], details)
        self.assertEqual(self.db.query(
            "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')"), "0")
        states = self.db.query(
            f"SELECT DISTINCT state FROM instances WHERE tags->>'load' = '{run}'")
        self.assertEqual(states, "terminated")


if __name__ == "__main__":
    unittest.main()
