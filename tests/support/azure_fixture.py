"""The ARM emulator (tests/emulators/azure) as a cloud of the shared scenarios
(tests/support/cloud_fixture.py): an azure provider with an app registration (tenant, client
id, client secret in a file) that the emulator's Entra ID endpoint knows.

stdlib only.
"""
import json
import os
import uuid

from cloud_fixture import CloudFixture
from emulator_process import emulator_path

SUBSCRIPTION = "6b7e1c3a-0f43-4b9e-9d61-3c8d2a0f5e11"
RESOURCE_GROUP = "cloudbrain-ci"
TENANT = "9f1d6a52-7e2c-4c1b-8a3e-5d4f6b7c8d90"
CLIENT_ID = "0c8a7f55-21d4-4b2e-9a36-6f0e2d1c3b4a"
CLIENT_SECRET = "Zq8~cbTestSecret.0123456789-abcdefghijklmn"
SUBNET = ("/subscriptions/%s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/"
          "ci-vnet/subnets/default" % SUBSCRIPTION)
FAST = {"vm_create_delay": 0.1, "vm_delete_delay": 0.1, "vm_update_delay": 0.02,
        "reservation_create_delay": 0.2, "reservation_delete_delay": 0.1}
MARKERS = ("cloudbrain-deployment", "cloudbrain-instance", "cloudbrain-reservation")


def register_app(emu):
    emu.control("POST", "clients", {"tenant": TENANT, "client_id": CLIENT_ID,
                                    "client_secret": CLIENT_SECRET})


def write_secret(workdir, secret=CLIENT_SECRET):
    """The secret in a file of its own, as operators keep it (client-secret = @/path). The
    service runs as another user when the tests run as root, so it is readable."""
    path = os.path.join(workdir, "azure-secret-%s" % uuid.uuid4().hex[:8])
    with open(path, "w") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o644)
    return path


class Fixture(CloudFixture):
    name = "azure"
    type = "azure"
    zones = ["1", "2", "3"]
    image = "Canonical:ubuntu-24_04-lts:server:latest"
    machine_types = {"standard": "Standard_D2s_v5", "premium": "Standard_D4s_v5"}
    capacity_reason = "ZonalAllocationFailed"
    script = emulator_path("azure", "arm_emulator.py")
    emulator_args = ("--config", json.dumps(FAST))

    def prepare(self):
        register_app(self.emu)
        self.secret_file = write_secret(self.workdir)

    def section(self, zones=None, **extra):
        s = {"type": "azure", "subscription": SUBSCRIPTION, "resource-group": RESOURCE_GROUP,
             "location": "eastus", "zones": " ".join(zones or self.zones[:2]), "subnet": SUBNET,
             "endpoint": self.base, "login-endpoint": self.base, "imds-endpoint": self.base,
             "tenant": TENANT, "client-id": CLIENT_ID, "client-secret": "@" + self.secret_file,
             "standard-vm-size": self.machine_types["standard"],
             "premium-vm-size": self.machine_types["premium"], "ssh-user": "tester",
             "rate-limit": "200", "max-in-flight": "100"}
        s.update(extra)
        return s

    def counters(self):
        return self.control("GET", "counters")

    def vms(self):
        out = []
        for v in self.control("GET", "instances")["instances"]:
            tags = dict(v.get("tags") or {})
            instance = tags.pop("cloudbrain-instance", None)
            deployment = tags.pop("cloudbrain-deployment", None)
            out.append({"id": v["vmId"], "name": v["name"], "instance": instance,
                        "deployment": deployment, "zone": v["zone"],
                        "running": v["provisioningState"] == "Succeeded" and
                        v["powerState"] == "running",
                        "ip": v.get("ipAddress"), "machine_type": v["vmSize"], "tags": tags,
                        "reservation": v.get("reservation")})
        return out

    def launches(self, instance_id):
        # VM resources made under the instance's name (a PUT that found one there is the same
        # VM and counts under idempotent_replays instead).
        return self.counters()["vms_created"].get("cb-" + instance_id, 0)

    def dedup_hits(self):
        return self.counters()["idempotent_replays"]

    def reservations(self):
        out = []
        for r in self.control("GET", "reservations")["reservations"]:
            tags = r.get("tags") or {}
            out.append({"id": r["reservationId"], "name": r["name"],
                        "reservation": tags.get("cloudbrain-reservation"),
                        "deployment": tags.get("cloudbrain-deployment"), "zone": r["zone"],
                        "count": r["capacity"], "in_use": len(r["associated"]),
                        "machine_type": r["vmSize"]})
        return out

    def reservations_made(self, reservation_id):
        return self.counters()["reservations_created"].get("cbr-" + reservation_id, 0)

    def requests_since(self, seq, route):
        log = self.control("GET", "requests?since=%d&path_prefix=/subscriptions/" % seq)
        return [e for e in log["requests"] if e.get("route") == route]

    def create_zones_since(self, seq):
        return [e.get("zone") for e in
                self.requests_since(seq, "virtualMachines.createOrUpdate")]

    def reserve_zones_since(self, seq):
        return [e.get("zone") for e in
                self.requests_since(seq, "capacityReservations.createOrUpdate")]

    def lose_create_answers(self, count):
        self.control("POST", "drop", {"count": count, "when": "after", "method": "PUT",
                                      "path_regex": "/virtualMachines/[^/]+$"})

    def fail_listings(self, what):
        regex = {"instances": "/virtualMachines$",
                 "reservations": "/capacityReservations$"}[what]
        self.control("POST", "fail", {"count": None, "status": 503, "method": "GET",
                                      "path_regex": regex})

    def slow_reservations(self, seconds):
        self.control("POST", "config", {"reservation_create_delay":
                                        FAST["reservation_create_delay"] if seconds is None
                                        else seconds})

    def slow_down(self):
        # A VM's long-running operation goes on at the emulator while cloudbrain is down, so it
        # takes long enough here for the chaos test's kills to land before all are done.
        self.control("POST", "config", {"vm_create_delay": 6.0, "vm_delete_delay": 5.0})

    def speed_up(self):
        self.control("POST", "config", FAST)

    def plant_vm(self, name_hint, deployment=None, instance_id=None, zone=None, age=0):
        tags = {}
        if deployment:
            tags["cloudbrain-deployment"] = deployment
        if instance_id:
            tags["cloudbrain-instance"] = instance_id
        name = "%s-%s" % (name_hint, uuid.uuid4().hex[:6])
        self.control("POST", "instances", {"name": name, "zone": zone or self.zones[0],
                                           "tags": tags, "age_seconds": age,
                                           "subscription": SUBSCRIPTION,
                                           "resource_group": RESOURCE_GROUP})
        return name

    def vm_exists(self, handle):
        return any(v["name"] == handle for v in self.control("GET", "instances")["instances"])

    def delete_behind_our_back(self, instance_id):
        vm = self.vm(instance_id)
        token = "behind-our-back-" + uuid.uuid4().hex[:8]
        self.control("POST", "tokens", {"token": token})
        status, body, _ = self.emu.request(
            "DELETE", "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/"
            "virtualMachines/%s?api-version=2024-07-01" % (SUBSCRIPTION, RESOURCE_GROUP,
                                                          vm["name"]),
            headers={"Authorization": "Bearer " + token})
        assert status == 202, (status, body)
