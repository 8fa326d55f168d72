"""A burst of API requests never becomes a burst of cloud calls: each provider's cloud calls are
held to `rate-limit` per second (slots 1/rate apart, taken from PostgreSQL so that it holds for a
whole cluster; tests/integration/cluster checks three nodes) and its jobs to `max-in-flight`,
whatever arrives at the API."""

import concurrent.futures
import time
import unittest

from cloudbrain_test import ServiceTestCase, wait_until

RATE = 10  # cloud calls per second


class RateLimitTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a", "boot-delay": "50ms",
                         "rate-limit": str(RATE), "max-in-flight": "50"}}

    def provider(self):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        [p] = r.json()["providers"]
        return p

    def test_the_rate_limit_is_shown_as_configured(self):
        r = self.service.request("GET", "/providers")
        body = r.body.decode() if isinstance(r.body, bytes) else r.body
        self.assertIn('"rate_limit":%d,' % RATE, body)
        self.assertEqual(self.provider()["rate_limit"], RATE)

    def test_a_burst_of_creates_is_paced_at_the_rate_limit(self):
        before = self.provider()["calls"]
        burst = 40
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=burst) as pool:
            ids = list(pool.map(lambda _: self.create()["id"], range(burst)))
        accepted_in = time.monotonic() - started
        # The API accepts the whole burst at once; the cloud sees it spread out.
        self.assertLess(accepted_in, 10, "the API should not wait for the cloud")

        samples = []  # (seconds since the burst, cloud calls so far)

        def all_running():
            samples.append((time.monotonic() - started, self.provider()["calls"] - before))
            r = self.service.request("GET", "/instances?state=running&limit=1000")
            return len(r.json()["instances"]) == burst

        wait_until(all_running, 60, interval=0.25, what=f"{burst} instances running")
        total = samples[-1][1]
        # Each instance needs at least a create and a get: at least 2 calls each.
        self.assertGreaterEqual(total, 2 * burst)
        elapsed = samples[-1][0]
        # Never more than the pacing allows: RATE per second, and less than a second's burst.
        self.assertLessEqual(total, RATE + RATE * elapsed + 1,
                             f"{total} calls in {elapsed:.1f}s at {RATE}/s")
        # So the whole burst took at least (calls - burst allowance) / rate seconds.
        self.assertGreaterEqual(elapsed, (total - RATE) / RATE - 0.5)
        for (t0, c0) in samples:
            for (t1, c1) in samples:
                if t1 - t0 >= 1.0:
                    self.assertLessEqual(c1 - c0, RATE * (t1 - t0) + RATE + 1,
                                         f"{c1 - c0} calls between {t0:.2f}s and {t1:.2f}s")
        self.assertGreater(self.provider()["rate_limit_waits"], 0)
        self.assertEqual(len(set(ids)), burst)


if __name__ == "__main__":
    unittest.main()
