"""What is particular to the aws provider, through the real binary against the EC2 emulator
(tests/emulators/aws, its own process): credentials from the shared file, the environment and
IMDSv2; a wrong secret ending errored with EC2's reason and no secret in any log line; images by
AMI id and by name (DescribeImages); the SSH key through cloud-init; eventual consistency after
launches; a zone that does not offer the instance type skipped; quota. (What every cloud must do
runs against AWS from tests/integration/clouds.)

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import json
import unittest
import urllib.request
import uuid

from aws_fixture import ACCESS_KEY, SECRET_KEY, Fixture, write_credentials
from cloud_fixture import SSH_KEY, CloudCase
from cloudbrain_test import wait_until

NEWEST = "ami-0d2cfb69a99b9a026"  # cloudbrain-ci-2024-02, the newest available cloudbrain-ci-*


class AwsCase(CloudCase):
    fixture_class = Fixture

    def requests_for(self, action, since=0):
        log = self.cloud.control("GET", "requests?since=%d&path_prefix=/" % since)["requests"]
        return [e for e in log if e.get("route") == action]

    def log_text(self):
        with open(self.service.log_path, errors="replace") as f:
            return f.read()


class Credentials(AwsCase):
    """The shared file (profile ci), IMDSv2 (no file, no environment), and a wrong secret."""

    WRONG = "wrong/secret/KEY/0123456789abcdefghijkl"

    @classmethod
    def service_providers(cls):
        bad = write_credentials(cls.cloud.workdir, name="bad-credentials", secret=cls.WRONG)
        imds = cls.cloud.section(**{"metadata-endpoint": cls.cloud.base})
        del imds["credentials"], imds["profile"]  # no file and no environment: IMDSv2
        return {"main": cls.cloud.section(), "imds": imds,
                "badsecret": cls.cloud.section(credentials=bad)}

    def test_the_shared_file_signs_every_call(self):
        seq = self.cloud.seq()
        inst = self.create()
        self.wait_running(inst["id"])
        keys = {e.get("access_key") for e in self.requests_for("RunInstances", seq)}
        self.assertEqual(keys, {ACCESS_KEY})
        self.assertEqual(self.provider()["details"]["credentials"], "shared file")

    def test_imdsv2_credentials_work_and_are_fetched_once(self):
        seq = self.cloud.seq()
        ids = [self.create(provider="imds")["id"] for _ in range(5)]
        for i in ids:
            self.wait_running(i)
        keys = {e.get("access_key") for e in self.requests_for("RunInstances", seq)}
        self.assertEqual(len(keys), 1, keys)
        self.assertTrue(keys.pop().startswith("ASIA"))
        details = self.provider("imds")["details"]
        self.assertEqual(details["credentials"], "IMDSv2")
        self.assertEqual(details["credential_fetches"], 1)
        # One IMDSv2 session token and one role's set for the whole class, however many calls.
        log = self.cloud.control("GET", "requests?path_prefix=/latest/")["requests"]
        ours = [e for e in log if e["user_agent"].startswith("cloudbrain")]
        self.assertEqual([(e["method"], e["path"]) for e in ours],
                         [("PUT", "/latest/api/token"),
                          ("GET", "/latest/meta-data/iam/security-credentials/"),
                          ("GET", "/latest/meta-data/iam/security-credentials/cloudbrain-role")])

    def test_a_wrong_secret_is_errored_with_ec2s_reason_and_no_secret_anywhere(self):
        inst = self.create(provider="badsecret")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        reason = errored["error_reason"]
        self.assertIn("SignatureDoesNotMatch", reason)
        self.assertIn("Check your AWS Secret Access Key", reason)
        self.assertIsNone(self.cloud.vm(inst["id"]))
        # The IMDS role's secret and token too: fetch them the way the service did.
        token = urllib.request.urlopen(urllib.request.Request(
            self.cloud.base + "/latest/api/token", method="PUT",
            headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})).read().decode()
        self.create(provider="imds")
        imds = json.loads(urllib.request.urlopen(urllib.request.Request(
            self.cloud.base + "/latest/meta-data/iam/security-credentials/cloudbrain-role",
            headers={"X-aws-ec2-metadata-token": token})).read())
        providers = self.service.request("GET", "/providers").body
        log = self.log_text()
        for secret in (self.WRONG, SECRET_KEY, imds["SecretAccessKey"], imds["Token"]):
            self.assertNotIn(secret, log)
            self.assertNotIn(secret, providers)
            self.assertNotIn(secret, json.dumps(errored))
        self.assertIn("SignatureDoesNotMatch", log)  # the reason is logged, the secret not


class EnvironmentCredentials(AwsCase):
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    @classmethod
    def service_providers(cls):
        s = cls.cloud.section()
        del s["credentials"], s["profile"]
        return {"main": s}

    def test_the_environments_key_signs_every_call(self):
        inst = self.create()
        self.wait_running(inst["id"])
        self.assertEqual(self.provider()["details"]["credentials"], "environment")
        self.assertEqual({e.get("access_key") for e in self.requests_for("RunInstances")},
                         {ACCESS_KEY})


class ImagesAndUserData(AwsCase):
    settings = {"job-max-attempts": "3"}

    def test_an_ami_id_is_launched_as_given(self):
        seq = self.cloud.seq()
        inst = self.create(image="ami-0694d931cee176e7d")
        self.wait_running(inst["id"])
        vm = [v for v in self.cloud.instances() if v["id"] == self.get(inst["id"])["upstream_id"]]
        self.assertEqual(vm[0]["imageId"], "ami-0694d931cee176e7d")
        self.assertEqual(self.requests_for("DescribeImages", seq), [])

    def test_a_name_is_looked_up_once_with_describe_images(self):
        seq = self.cloud.seq()
        ids = [self.create(image="cloudbrain-ci-2024-0?")["id"] for _ in range(3)]
        for i in ids:
            self.wait_running(i)
        images = {v["imageId"] for v in self.cloud.instances()
                  if v["tags"].get("cloudbrain-instance") in ids}
        self.assertEqual(images, {NEWEST})  # 2024-03 is still pending
        self.assertEqual(len(self.requests_for("DescribeImages", seq)), 1)

    def test_an_unknown_name_is_errored_naming_the_owners(self):
        inst = self.create(image="no-such-image")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertEqual(errored["error_reason"],
                         "no available image named 'no-such-image' owned by self "
                         "(DescribeImages)")

    def test_the_ssh_key_reaches_the_vm_through_cloud_init(self):
        inst = self.create(public_ssh_key=SSH_KEY, tags={"team": "infra"})
        self.wait_running(inst["id"])
        vm = self.cloud.vm(inst["id"])
        self.assertTrue(vm["user_data"].startswith("#cloud-config\n"), vm["user_data"])
        self.assertIn("  - name: tester\n", vm["user_data"])
        self.assertIn('ssh_authorized_keys:\n      - "%s"' % SSH_KEY, vm["user_data"])
        raw = [v for v in self.cloud.instances() if v["id"] == vm["id"]][0]
        self.assertEqual(raw["volume_tags"]["cloudbrain-instance"], inst["id"])
        self.assertEqual(raw["volume_tags"]["team"], "infra")
        self.assertEqual(len(raw["clientToken"]), 64)
        self.assertEqual(raw["shutdownBehavior"], "terminate")

    def test_quota_is_errored_naming_it(self):
        self.cloud.control("POST", "quota", {"metric": "vcpus", "limit": 0})
        try:
            inst = self.create()
            errored = self.wait_settled(inst["id"])
            self.assertEqual(errored["state"], "errored", errored)
            self.assertIn("VcpuLimitExceeded", errored["error_reason"])
            self.assertIn("current vCPU limit of 0", errored["error_reason"])
        finally:
            self.cloud.control("POST", "quota", {"metric": "vcpus", "limit": None})


class EventualConsistency(AwsCase):
    """Launches EC2 does not know everywhere for 2 s: waited out, never taken for vanished."""

    settings = {"reconcile-interval": "1s", "orphan-grace": "1h"}

    def test_instances_made_moments_ago_are_waited_for(self):
        self.cloud.control("POST", "config", {"consistency_delay": 2.0})
        run = "ec-" + uuid.uuid4().hex[:8]
        try:
            ids = [self.create(tags={"run": run})["id"] for _ in range(8)]
            for i in ids:
                self.wait_running(i, timeout=90)
            self.assertEqual([self.cloud.launches(i) for i in ids], [1] * len(ids))
            self.assertGreater(self.cloud.counters()["consistency_not_found"], 0)
            self.assertGreater(self.provider()["details"]["consistency_waits"], 0)
            for i in ids:
                self.assertEqual(self.service.request("DELETE", "/instances/" + i).status, 202)
            for i in ids:
                self.wait_terminated(i, timeout=90)
            self.assertEqual([v for v in self.cloud.vms() if v["tags"].get("run") == run], [])
            self.assertEqual(self.provider()["reconciler"]["vanished"], 0)
        finally:
            self.cloud.control("POST", "config", {"consistency_delay": 0.0})


class UnsupportedZone(AwsCase):
    settings = {"job-max-attempts": "2"}

    def test_a_zone_without_the_type_is_skipped(self):
        zones = self.cloud.zones
        self.cloud.control("POST", "offerings", {"zone": zones[0],
                                                 "instance_types": ["m5.large"]})
        try:
            seq = self.cloud.seq()
            inst = self.create(instance_type="premium")
            running = self.wait_running(inst["id"])
            self.assertEqual(running["zone"], zones[1])
            self.assertEqual(self.cloud.create_zones_since(seq), [zones[0], zones[1]])
            errors = [e.get("error") for e in self.requests_for("RunInstances", seq)]
            self.assertEqual(errors, ["Unsupported", None])
        finally:
            self.cloud.control("POST", "offerings", {"zone": zones[0], "instance_types": None})

    def test_no_zone_offering_it_is_errored_with_every_zones_reason(self):
        for z in self.cloud.zones[:2]:
            self.cloud.control("POST", "offerings", {"zone": z, "instance_types": ["m5.large"]})
        try:
            inst = self.create(instance_type="premium")
            errored = self.wait_settled(inst["id"])
            self.assertEqual(errored["state"], "errored", errored)
            for z in self.cloud.zones[:2]:
                self.assertIn("Availability Zone (%s)" % z, errored["error_reason"])
            self.assertIn("(Unsupported, HTTP 400", errored["error_reason"])
        finally:
            for z in self.cloud.zones[:2]:
                self.cloud.control("POST", "offerings", {"zone": z, "instance_types": None})


if __name__ == "__main__":
    unittest.main()
