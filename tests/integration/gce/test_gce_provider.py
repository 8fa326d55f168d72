"""What is particular to the GCE provider, end to end: the real `cloudbrain` binary with
`type = gce` providers, talking Compute Engine v1 REST to the GCE emulator (tests/emulators/gce),
which runs as its own process and is itself checked against gcloud: what an insert carries,
Google's quota and image errors, a refused key, an expired token replaced once for every caller,
throttling within the token bucket's bound, and tokens from the metadata server. What every
cloud must do (lifecycle, zone fallback, faults, 100 creates, the reconciler, reservations,
SIGKILLs) is in tests/integration/clouds, run against the GCE emulator through
tests/support/gce_fixture.py.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import json
import unittest
import uuid

import gce_service
from gce_service import (PROJECT, SA_EMAIL, SSH_KEY, GceCase, emu_instances, emu_vm,
                         gce_section, last_seq, log_since, make_key_file)


def setUpModule():
    global EMU
    EMU = gce_service.start_emulator()


def tearDownModule():
    gce_service.stop_emulator()


class InstanceLifecycle(GceCase):
    # A create that no zone has room for is retried a few times, then errored.
    settings = {"job-max-attempts": "4"}

    @classmethod
    def service_providers(cls):
        cls.key_path, cls.private_key = make_key_file(SA_EMAIL)
        bad_key_path, _ = make_key_file("unregistered@cb-gce-test.iam.gserviceaccount.com",
                                        register=False)
        return {"gce": gce_section(credentials=cls.key_path),
                "gce-badkey": gce_section(credentials=bad_key_path, zones="us-central1-c")}

    def test_the_insert_carries_googles_fields(self):
        inst = self.create(public_ssh_key=SSH_KEY, tags={"team": "infra", "run": "lifecycle"})
        self.wait_running(inst["id"])
        vm = emu_vm(inst["id"])
        self.assertIsNotNone(vm, "no VM at the emulator")
        self.assertEqual(vm["project"], PROJECT)
        # Labels as Google has them, and the SSH key the GCE way: "ssh-keys" metadata.
        self.assertEqual(vm["labels"]["cloudbrain-instance"], inst["id"])
        self.assertIn("cloudbrain-deployment", vm["labels"])
        self.assertEqual(vm["labels"]["team"], "infra")
        self.assertEqual(vm["metadata"]["ssh-keys"], "tester:" + SSH_KEY)
        self.assertEqual(vm["name"], "cb-" + inst["id"])

    def test_quota_is_errored_naming_the_quota(self):
        EMU.control("POST", "quota", {"metric": "INSTANCES", "limit": 0, "region": "us-central1"})
        try:
            inst = self.create()
            errored = self.wait_settled(inst["id"])
            self.assertEqual(errored["state"], "errored", errored)
            self.assertIn("Quota 'INSTANCES' exceeded", errored["error_reason"])
            self.assertIsNone(emu_vm(inst["id"]))
        finally:
            EMU.control("POST", "quota", {"metric": "INSTANCES", "limit": None,
                                          "region": "us-central1"})

    def test_unknown_image_is_errored_with_googles_message(self):
        inst = self.create(image="no-such-image")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("projects/debian-cloud/global/images/no-such-image", errored["error_reason"])
        self.assertIn("was not found", errored["error_reason"])

    def test_refused_key_is_a_clear_error_without_the_key(self):
        inst = self.create(provider="gce-badkey")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("invalid_grant", errored["error_reason"])
        self.assertIn("unregistered@cb-gce-test.iam.gserviceaccount.com", errored["error_reason"])
        body = json.dumps(errored)
        self.assertNotIn("PRIVATE KEY", body)
        with open(self.service.log_path, errors="replace") as f:
            log = f.read()
        self.assertNotIn("PRIVATE KEY", log)
        self.assertNotIn(self.private_key.splitlines()[1], log)

    def test_expired_token_is_replaced_once_for_all_callers(self):
        first = self.create()
        self.wait_running(first["id"])
        before = self.provider()["details"]
        expired = EMU.control("POST", "tokens/expire", {"email": SA_EMAIL})
        self.assertGreaterEqual(expired["expired"], 1)
        seq = last_seq()
        failures_before = EMU.control("GET", "counters")["auth_failures"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            ids = list(pool.map(lambda _: self.create()["id"], range(20)))
        for i in ids:
            self.wait_running(i)
        # The calls that met the expired token got 401; one new token served them all.
        self.assertGreater(EMU.control("GET", "counters")["auth_failures"], failures_before)
        token_calls = [e for e in log_since(seq, "/token") if e["status"] == 200]
        self.assertEqual(len(token_calls), 1, token_calls)
        after = self.provider()["details"]
        self.assertEqual(after["token_fetches"], before["token_fetches"] + 1)
        self.assertGreater(after["auth_retries"], before["auth_retries"])
        self.assertEqual(after["token_source"], "service-account key")


class ThrottledCloud(GceCase):
    RATE = 8

    @classmethod
    def service_providers(cls):
        key, _ = make_key_file(SA_EMAIL)
        return {"gce": gce_section(credentials=key, **{"rate-limit": str(cls.RATE)})}

    def test_throttling_backs_off_and_never_exceeds_the_rate(self):
        run = "throttle-" + uuid.uuid4().hex[:8]
        seq = last_seq()
        EMU.control("POST", "throttle", {"count": 3})
        EMU.control("POST", "throttle", {"count": 1, "status": 429, "retry_after": 2})
        try:
            ids = [self.create(tags={"run": run})["id"] for _ in range(12)]
            for i in ids:
                self.wait_running(i, timeout=120)
        finally:
            EMU.control("DELETE", "faults")
        log = [e for e in log_since(seq) if e.get("user_agent", "").startswith("cloudbrain")]
        throttled = [e for e in log if e["status"] in (403, 429)]
        self.assertEqual(len(throttled), 4, throttled)
        # The token bucket's bound, between any two calls: RATE per second plus one second's
        # burst. Checked on the emulator's own clock.
        ts = [e["t"] for e in log]
        for i in range(len(ts)):
            for j in range(i + 1, len(ts)):
                self.assertLessEqual(j - i + 1, self.RATE * (ts[j] - ts[i]) + self.RATE + 1,
                                     "%d calls in %.2fs" % (j - i + 1, ts[j] - ts[i]))
        # After the 429 that asked for 2 s, the provider went quiet for that long: only the
        # requests already on their way (at most one per job in flight) arrive before the pause.
        [t429] = [e["t"] for e in log if e["status"] == 429]
        following = [t for t in ts if t > t429]
        self.assertTrue(following)
        in_flight = [t for t in following if t < t429 + 0.3]
        self.assertLessEqual(len(in_flight), 12)
        rest = following[len(in_flight):]
        self.assertTrue(rest)
        last_before_pause = in_flight[-1] if in_flight else t429
        self.assertGreaterEqual(rest[0] - last_before_pause, 1.9,
                                "calls resumed %.2fs after the 429" % (rest[0] - t429))
        self.assertGreater(self.provider()["rate_limit_waits"], 0)
        vms = [v for v in emu_instances() if v["labels"].get("run") == run]
        self.assertEqual(len(vms), 12)


class MetadataServerAuth(GceCase):
    """No key file: tokens come from the metadata server that GCE_METADATA_HOST points at."""

    @classmethod
    def service_providers(cls):
        cls.env = {"GCE_METADATA_HOST": "127.0.0.1:%d" % EMU.port}
        return {"gce": gce_section()}

    def test_tokens_come_from_the_metadata_server(self):
        seq = last_seq()
        inst = self.create()
        self.wait_running(inst["id"])
        meta = log_since(seq, "/computeMetadata/")
        self.assertEqual([(e["path"], e["status"]) for e in meta],
                         [("/computeMetadata/v1/instance/service-accounts/default/token", 200)])
        self.assertEqual(self.provider()["details"]["token_source"], "metadata")


if __name__ == "__main__":
    unittest.main()
