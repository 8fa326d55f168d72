"""What is Azure's own, beyond the scenarios every cloud passes (tests/integration/clouds): the
real binary with `type = azure` providers against the ARM emulator (tests/emulators/azure),
observed from both sides.

- Tokens: client credentials and managed identity (system- and user-assigned) both work; a
  token ARM stops taking is renewed once; a wrong secret ends `errored` with Entra ID's reason
  and the secret is in no log line and no answer.
- Nothing billed is left: after a delete no VM, NIC, public IP or OS disk of it; a VM that a
  failed allocation left `Failed` is deleted before the next zone is tried, and when every zone
  is out nothing of the instance is left either.
- Azure's refusals: SkuNotAvailable skips the zone, a cores quota and a bad image end
  `errored` with ARM's message; a VM asked for without a key gets one nobody holds.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import base64
import struct
import unittest
import uuid

from azure_fixture import CLIENT_ID, CLIENT_SECRET, Fixture, write_secret
from cloud_fixture import SSH_KEY, CloudCase

USER_IDENTITY = "5e2d1c0b-9a8f-4e7d-8c6b-5a4f3e2d1c0b"


class AzureCase(CloudCase):
    fixture_class = Fixture
    settings = {"job-max-attempts": "3"}

    def leftovers(self, instance_id):
        """Whatever of the instance's VM the emulator still holds: the VM, its NIC, public IP
        and OS disk."""
        name = "cb-" + instance_id
        s = self.cloud.control("GET", "state")
        out = ["vm " + name] if any(i["name"] == name for i in s["instances"]) else []
        for kind, suffix in (("nics", "-nic"), ("public_ips", "-ip"), ("disks", "-osdisk")):
            if name + suffix in s[kind]:
                out.append("%s %s%s" % (kind, name, suffix))
        return out

    def arm_log_since(self, seq):
        log = self.cloud.control("GET", "requests?since=%d" % seq)["requests"]
        return [e for e in log if e["path"].startswith("/subscriptions/")]


class NothingLeftBehind(AzureCase):
    def test_a_deleted_vm_leaves_no_nic_ip_or_disk(self):
        inst = self.create(public_ssh_key=SSH_KEY)
        running = self.wait_running(inst["id"])
        name = "cb-" + inst["id"]
        self.assertEqual(self.leftovers(inst["id"]),
                         ["vm " + name, "nics %s-nic" % name, "public_ips %s-ip" % name,
                          "disks %s-osdisk" % name])
        vm = self.cloud.control("GET", "instances")["instances"]
        vm = [v for v in vm if v["name"] == name][0]
        self.assertEqual(vm["sshKeys"], [SSH_KEY])
        self.assertEqual(vm["adminUsername"], "tester")
        self.assertEqual(vm["image"], {"publisher": "Canonical", "offer": "ubuntu-24_04-lts",
                                       "sku": "server", "version": "latest"})
        self.assertEqual(running["ip_address"], vm["ipAddress"])
        r = self.service.request("DELETE", "/instances/" + inst["id"])
        self.assertEqual(r.status, 202, r)
        self.wait_terminated(inst["id"])
        self.assertEqual(self.leftovers(inst["id"]), [])
        self.assertEqual(self.cloud.counters()["vms_deleted"].get(name), 1)

    def test_a_failed_allocation_is_deleted_before_the_next_zone(self):
        self.cloud.set_capacity(["1"], 0)
        try:
            seq = self.cloud.seq()
            inst = self.create()
            running = self.wait_running(inst["id"])
            self.assertEqual(running["zone"], "2")
        finally:
            self.cloud.set_capacity(["1"], None)
        name = "cb-" + inst["id"]
        calls = [(e["method"], e.get("zone")) for e in self.arm_log_since(seq)
                 if e["path"].endswith("/virtualMachines/" + name)]
        put1 = calls.index(("PUT", "1"))
        delete = calls.index(("DELETE", None), put1)
        put2 = calls.index(("PUT", "2"), delete)
        self.assertLess(put1, delete)
        self.assertLess(delete, put2)
        c = self.cloud.counters()
        self.assertEqual(c["allocation_failures"].get(name), 1)
        self.assertEqual(c["vms_allocated"].get(name), 1)
        # One VM, one NIC, one address: the failed VM's went with it.
        s = self.cloud.control("GET", "state")
        self.assertEqual([n for n in s["nics"] if n.startswith(name)], [name + "-nic"])
        self.assertEqual(self.provider()["details"]["failed_vms_deleted"], 1)

    def test_every_zone_out_leaves_nothing_of_the_instance(self):
        self.cloud.set_capacity(["1", "2"], 0)
        try:
            inst = self.create()
            errored = self.wait_settled(inst["id"])
        finally:
            self.cloud.set_capacity(["1", "2"], None)
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("1: ", errored["error_reason"])
        self.assertIn("2: ", errored["error_reason"])
        self.assertIn("ZonalAllocationFailed", errored["error_reason"])
        self.assertIn("sufficient capacity", errored["error_reason"])
        self.assertEqual(self.leftovers(inst["id"]), [])

    def test_a_zone_without_the_size_is_skipped(self):
        self.cloud.control("POST", "skus", {"zone": "1", "size": "Standard_D4s_v5"})
        try:
            inst = self.create(instance_type="premium")
            self.assertEqual(self.wait_running(inst["id"])["zone"], "2")
        finally:
            self.cloud.control("POST", "skus", {"zone": "1", "size": "Standard_D4s_v5",
                                                "available": True})

    def test_quota_and_bad_images_end_errored_with_arms_message(self):
        self.cloud.control("POST", "quota", {"cores": 0})
        try:
            inst = self.create()
            errored = self.wait_settled(inst["id"])
        finally:
            self.cloud.control("POST", "quota", {"cores": None})
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("Cores quota", errored["error_reason"])
        self.assertIn("OperationNotAllowed", errored["error_reason"])

        unknown = self.create(image="Canonical:no-such-offer:server:latest")
        errored = self.wait_settled(unknown["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("PlatformImageNotFound", errored["error_reason"])

        garbled = self.create(image="ubuntu-latest")
        errored = self.wait_settled(garbled["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("publisher:offer:sku:version", errored["error_reason"])

    def test_without_a_key_the_vm_gets_one_that_nobody_holds(self):
        a = self.create()
        b = self.create()
        self.wait_running(a["id"])
        self.wait_running(b["id"])
        keys = {v["name"]: v["sshKeys"] for v in self.cloud.control("GET", "instances")
                ["instances"]}
        ka, kb = keys["cb-" + a["id"]], keys["cb-" + b["id"]]
        self.assertEqual(len(ka), 1)
        kind, blob, comment = ka[0].split()
        self.assertEqual((kind, comment), ("ssh-ed25519", "cloudbrain-no-login"))
        raw = base64.b64decode(blob)
        self.assertEqual(struct.unpack(">I", raw[:4])[0], 11)
        self.assertEqual(len(raw), 4 + 11 + 4 + 32)
        self.assertNotEqual(ka, kb, "two VMs share a key")


class ClientSecretAuth(AzureCase):
    @classmethod
    def service_providers(cls):
        cls.wrong_secret = "Not-The-Secret~" + uuid.uuid4().hex
        wrong = write_secret(cls.cloud.workdir, cls.wrong_secret)
        return {"main": cls.cloud.section(),
                "wrong": cls.cloud.section(**{"client-secret": "@" + wrong})}

    def test_a_wrong_secret_is_errored_with_entra_ids_reason_and_never_shown(self):
        inst = self.create(provider="wrong")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("AADSTS7000215", errored["error_reason"])
        self.assertIn(CLIENT_ID, errored["error_reason"])
        wrong_secret = self.wrong_secret
        for line in self.service.log_lines():
            self.assertNotIn(wrong_secret, line)
            self.assertNotIn(CLIENT_SECRET, line)
        r = self.service.request("GET", "/providers")
        text = r.body.decode() if isinstance(r.body, bytes) else str(r.body)
        self.assertIn("AADSTS7000215", text)  # the provider's last error, without the secret
        self.assertNotIn(wrong_secret, text)
        self.assertNotIn(CLIENT_SECRET, text)
        self.assertNotIn(wrong_secret, errored["error_reason"])
        self.assertGreaterEqual(self.provider("wrong")["details"]["token_failures"], 1)

    def test_a_token_arm_stops_taking_is_renewed_once(self):
        inst = self.create()
        self.wait_running(inst["id"])
        fetched = self.provider()["details"]["token_fetches"]
        expired = self.cloud.control("POST", "tokens/expire",
                                     {"principal": "app:" + CLIENT_ID})["expired"]
        self.assertGreaterEqual(expired, 1)
        second = self.create()
        self.wait_running(second["id"])
        details = self.provider()["details"]
        self.assertGreaterEqual(details["auth_retries"], 1)
        self.assertEqual(details["token_fetches"], fetched + 1)
        self.assertEqual(details["token_source"], "client secret")


class ManagedIdentityAuth(AzureCase):
    @classmethod
    def service_providers(cls):
        cls.cloud.control("POST", "identities", {"client_id": USER_IDENTITY})
        system = cls.cloud.section(zones=["1"])
        user = cls.cloud.section(zones=["2"], **{"client-id": USER_IDENTITY})
        unknown = cls.cloud.section(zones=["3"], **{"client-id": str(uuid.uuid4())})
        for s in (system, user, unknown):
            for key in ("tenant", "client-secret"):
                s.pop(key)
        system.pop("client-id")
        return {"system": system, "user": user, "unknown": unknown}

    def test_system_and_user_assigned_identities_get_tokens_from_imds(self):
        seq = self.cloud.seq()
        a = self.create(provider="system")
        b = self.create(provider="user")
        self.assertEqual(self.wait_running(a["id"])["zone"], "1")
        self.assertEqual(self.wait_running(b["id"])["zone"], "2")
        # A token is fetched once and kept while it lasts: the service may have fetched either
        # before this test began (at start, or for the other test), so the whole history of
        # this class's emulator counts.
        log = [e for e in self.cloud.control("GET", "requests?since=0")["requests"]
               if e.get("route") == "imds.token"]
        queries = sorted(e["query"] for e in log if e["status"] == 200)
        self.assertTrue(any("client_id=" + USER_IDENTITY in q for q in queries), queries)
        self.assertTrue(any("client_id" not in q for q in queries), queries)
        self.assertTrue(all("resource=" in q for q in queries))
        self.assertEqual(self.provider("system")["details"]["token_source"], "managed identity")
        entra = [e for e in self.cloud.control("GET", "requests?since=%d" % seq)["requests"]
                 if e.get("route") == "entra.token"]
        self.assertEqual(entra, [], "no client credentials with a managed identity")

    def test_an_identity_imds_does_not_know_is_errored(self):
        inst = self.create(provider="unknown")
        errored = self.wait_settled(inst["id"])
        self.assertEqual(errored["state"], "errored", errored)
        self.assertIn("Identity not found", errored["error_reason"])


if __name__ == "__main__":
    unittest.main()
