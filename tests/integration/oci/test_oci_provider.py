"""What is OCI's own, through the real binary against the OCI emulator (the shared scenarios in
tests/integration/clouds run on it too): Flex and fixed shapes at the cloud, one instance per
cloudbrain instance, TERMINATED with its boot volume after a delete; the API key from the four
key fields, from a ~/.oci/config profile and encrypted with a pass phrase; a wrong key, a key
that is not its fingerprint's and a skewed clock each ending errored with a clear reason; and no
key material in any log line.

stdlib only (plus the openssl binary); tests/run-all.sh provides the binary and the database.
"""
import os
import re
import subprocess
import unittest
import uuid

from cloud_fixture import SSH_KEY, CloudCase
from cloudbrain_test import wait_until
from oci_fixture import COMPARTMENT, TENANCY, USER, Fixture, make_api_key


class ShapesAndTermination(CloudCase):
    fixture_class = Fixture

    @classmethod
    def service_providers(cls):
        fixed = cls.cloud.section(**{"standard-shape": "VM.Standard2.1",
                                     "premium-shape": "VM.Standard2.4"})
        for key in ("standard-ocpus", "standard-memory-gb", "premium-ocpus",
                    "premium-memory-gb"):
            del fixed[key]
        return {"main": cls.cloud.section(), "fixed": fixed}

    def launched(self, instance_id):
        """The emulator's instance for a cloudbrain instance (every state)."""
        found = [v for v in self.cloud.instances()
                 if (v.get("labels") or {}).get("cloudbrain-instance") == instance_id]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def test_standard_and_premium_launch_with_their_flex_configurations(self):
        seq = self.cloud.seq()
        standard = self.create(public_ssh_key=SSH_KEY, tags={"team": "infra"})
        premium = self.create(instance_type="premium")
        for inst, (ocpus, memory) in ((standard, (1, 8)), (premium, (4, 32))):
            running = self.wait_running(inst["id"])
            vm = self.launched(inst["id"])
            self.assertEqual(vm["shape"], "VM.Standard.E4.Flex")
            self.assertEqual(vm["shapeConfig"], {"ocpus": ocpus, "memoryInGBs": memory})
            self.assertEqual(vm["imageId"], self.cloud.image)
            self.assertEqual(vm["status"], "RUNNING")
            self.assertEqual(running["upstream_id"], vm["id"])
            self.assertEqual(running["ip_address"], vm["publicIp"])
            self.assertEqual(vm["labels"]["cloudbrain-instance"], inst["id"])
            self.assertEqual(self.cloud.launches(inst["id"]), 1)
        self.assertEqual(self.launched(standard["id"])["metadata"],
                         {"ssh_authorized_keys": SSH_KEY})
        self.assertEqual(self.launched(standard["id"])["labels"]["team"], "infra")
        # Each launch carried an opc-retry-token derived from its job: 64 hex characters.
        launches = self.cloud.requests_since(seq, "LaunchInstance")
        self.assertEqual(len(launches), 2)
        for e in launches:
            self.assertRegex(e["retry_token"], r"^[0-9a-f]{64}$")
        self.assertEqual(len({e["retry_token"] for e in launches}), 2)

        for inst in (standard, premium):
            r = self.service.request("DELETE", "/instances/" + inst["id"])
            self.assertEqual(r.status, 202, r)
        for inst in (standard, premium):
            self.wait_terminated(inst["id"])
            vm = self.launched(inst["id"])
            self.assertEqual(vm["status"], "TERMINATED")
            self.assertIs(vm["preserveBootVolume"], False)
        terminations = self.cloud.requests_since(seq, "TerminateInstance")
        self.assertEqual(len(terminations), 2)
        self.assertTrue(all("preserveBootVolume=false" in e["query"] for e in terminations))

    def test_fixed_shapes_take_no_shape_configuration(self):
        inst = self.create(provider="fixed", instance_type="premium")
        self.wait_running(inst["id"])
        vm = self.launched(inst["id"])
        self.assertEqual(vm["shape"], "VM.Standard2.4")
        self.assertEqual(vm["shapeConfig"], {"ocpus": 4, "memoryInGBs": 60})
        r = self.service.request("DELETE", "/instances/" + inst["id"])
        self.assertEqual(r.status, 202, r)
        self.wait_terminated(inst["id"])
        self.assertEqual(self.launched(inst["id"])["status"], "TERMINATED")

    def test_an_image_that_is_not_an_ocid_is_errored_clearly(self):
        inst = self.create(image="debian-12")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("image OCID", errored["error_reason"])

    def test_providers_show_the_oci_provider(self):
        p = self.provider()
        self.assertEqual(p["type"], "oci")
        self.assertEqual(p["zones"], self.cloud.zones[:2])
        self.assertEqual(p["details"]["key_source"], "key-file")
        self.assertEqual(p["details"]["key_id"], self.cloud.key_id)


class Credentials(CloudCase):
    fixture_class = Fixture

    @classmethod
    def service_providers(cls):
        cloud = cls.cloud
        work = cloud.workdir
        # A ~/.oci/config with the key in a profile of its own.
        config = os.path.join(work, "oci-config")
        with open(config, "w") as f:
            f.write("[DEFAULT]\nregion=us-phoenix-1\n\n[CI]\ntenancy=%s\nuser=%s\n"
                    "fingerprint=%s\nkey_file=%s\n" % (TENANCY, USER, cloud.fingerprint,
                                                       cloud.key_file))
        os.chmod(config, 0o644)
        # The same key encrypted, its pass phrase in a file given as @/path.
        encrypted = os.path.join(work, "oci-key-encrypted.pem")
        phrase_file = os.path.join(work, "oci-pass-phrase")
        cls.phrase = "phrase-" + uuid.uuid4().hex
        with open(phrase_file, "w") as f:
            f.write(cls.phrase)
        subprocess.run(["openssl", "pkey", "-in", cloud.key_file, "-aes256", "-passout",
                        "pass:" + cls.phrase, "-out", encrypted], check=True, capture_output=True)
        for p in (encrypted, phrase_file):
            os.chmod(p, 0o644)
        # A key OCI does not know, and a key that is not its fingerprint's.
        unknown_key, unknown_fp = make_api_key(cloud.emu, work, register=False)
        cls.key_files = [cloud.key_file, encrypted, unknown_key]
        profile = {k: v for k, v in cloud.section().items()
                   if k not in ("tenancy", "user", "fingerprint", "key-file", "region")}
        profile.update({"config-file": config, "profile": "CI"})
        return {"fields": cloud.section(),
                "profile": profile,
                "encrypted": cloud.section(**{"key-file": encrypted,
                                              "pass-phrase": "@" + phrase_file}),
                "unknown": cloud.section(**{"key-file": unknown_key, "fingerprint": unknown_fp}),
                "mismatch": cloud.section(**{"key-file": unknown_key}),
                "clock": cloud.section()}

    def test_key_fields_a_config_profile_and_an_encrypted_key_all_work(self):
        for provider in ("fields", "profile", "encrypted"):
            inst = self.create(provider=provider)
            running = self.wait_running(inst["id"])
            self.assertEqual(running["upstream_id"], self.cloud.vm(inst["id"])["id"])
        self.assertEqual(self.provider("profile")["details"]["key_source"],
                         "config-file %s [CI]" % os.path.join(self.cloud.workdir, "oci-config"))

    def test_a_key_oci_does_not_know_ends_errored_with_a_clear_reason(self):
        failures = self.cloud.counters()["auth_failures"]
        inst = self.create(provider="unknown")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        reason = errored["error_reason"]
        self.assertIn("OCI refused the request signature", reason)
        self.assertIn("check tenancy, user, fingerprint and key-file", reason)
        self.assertRegex(reason, r"HTTP 401 NotAuthenticated, opc-request-id [0-9A-F]{32}/")
        self.assertGreater(self.cloud.counters()["auth_failures"], failures)
        self.assertIsNone(self.cloud.vm(inst["id"]))

    def test_a_key_that_is_not_its_fingerprints_is_never_sent(self):
        seq = self.cloud.seq()
        inst = self.create(provider="mismatch")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("has the fingerprint", errored["error_reason"])
        self.assertIn("not the configured " + self.cloud.fingerprint, errored["error_reason"])
        self.assertEqual(self.cloud.requests_since(seq, "LaunchInstance"), [])

    def test_clock_skew_is_reported_as_such(self):
        self.cloud.control("POST", "config", {"clock_offset": -900})
        try:
            inst = self.create(provider="clock")
            errored = self.wait_settled(inst["id"])
        finally:
            self.cloud.control("POST", "config", {"clock_offset": 0})
        self.assertEqual(errored["state"], "errored", errored)
        self.assertRegex(errored["error_reason"],
                         r"this host's clock is 9\d\d s ahead of OCI's \(at most 5 minutes")

    def test_no_key_material_in_any_log_line(self):
        # Every key and the pass phrase, in every form a log line could carry them.
        secrets = [self.phrase]
        for path in self.key_files:
            with open(path) as f:
                pem = f.read()
            body = "".join(line for line in pem.splitlines() if not line.startswith("-----"))
            secrets += [body[k:k + 32] for k in range(0, len(body) - 32, 32)]
        for provider in ("fields", "encrypted", "unknown"):
            self.wait_settled(self.create(provider=provider)["id"])
        lines = self.service.log_lines()
        self.assertTrue(lines)
        for line in lines:
            self.assertNotIn("PRIVATE KEY", line)
            for s in secrets:
                self.assertNotIn(s, line)
        # Nor in what the API shows.
        shown = self.service.request("GET", "/providers").body + \
            self.service.request("GET", "/instances?limit=1000").body
        for s in secrets:
            self.assertNotIn(s, shown)
        self.assertTrue(re.search(r'"key_id":"ocid1\.tenancy', shown))


if __name__ == "__main__":
    unittest.main()
