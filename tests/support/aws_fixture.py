"""The EC2 emulator (tests/emulators/aws) as a cloud of the shared scenarios
(tests/support/cloud_fixture.py): an aws provider whose credentials come from a shared
credentials file (profile ci) holding the key the emulator knows; every call is signed with it
and checked by the emulator.

stdlib only.
"""
import json
import os

from cloud_fixture import CloudFixture, iso_ago
from emulator_process import emulator_path

REGION = "eu-west-1"
ACCESS_KEY = "AKIAEMULATOREXAMPLE1"  # what the emulator knows after every reset
SECRET_KEY = "emulator/secret/KEY/EXAMPLEKEYEXAMPLEKEY"
FAST = {"pending_delay": 0.1, "stopping_delay": 0.1, "reservation_create_delay": 0.3}
OURS = ("Name", "cloudbrain-deployment", "cloudbrain-instance", "cloudbrain-reservation")


def write_credentials(workdir, name="credentials", profile="ci", key=ACCESS_KEY,
                      secret=SECRET_KEY):
    """An AWS shared credentials file with a decoy default profile and `profile`."""
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("[default]\naws_access_key_id = AKIADECOYDECOYDECOY0\n"
                "aws_secret_access_key = decoy\n\n"
                "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                % (profile, key, secret))
    os.chmod(path, 0o644)
    return path


class Fixture(CloudFixture):
    name = "aws"
    type = "aws"
    zones = ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    # A name: every create looks it up with DescribeImages (the newest available of it).
    image = "cloudbrain-ci-*"
    machine_types = {"standard": "m5.large", "premium": "m5.2xlarge"}
    capacity_reason = "InsufficientInstanceCapacity"
    script = emulator_path("aws", "ec2_emulator.py")
    emulator_args = ("--config", json.dumps(FAST))

    def prepare(self):
        self.credentials_file = write_credentials(self.workdir)

    def section(self, zones=None, **extra):
        s = {"type": "aws", "region": REGION, "zones": " ".join(zones or self.zones[:2]),
             "endpoint": self.base, "credentials": self.credentials_file, "profile": "ci",
             "standard-instance-type": self.machine_types["standard"],
             "premium-instance-type": self.machine_types["premium"],
             "image-owners": "self", "ssh-user": "tester", "rate-limit": "200",
             "max-in-flight": "100"}
        s.update(extra)
        return s

    # ---- what the cloud holds ------------------------------------------------------------
    def instances(self):
        return self.control("GET", "instances")["instances"]

    def vms(self):
        out = []
        for v in self.instances():
            if v["state"] == "terminated":
                continue
            tags = dict(v.get("tags") or {})
            out.append({"id": v["id"], "name": tags.get("Name"),
                        "instance": tags.get("cloudbrain-instance"),
                        "deployment": tags.get("cloudbrain-deployment"), "zone": v["zone"],
                        "running": v["state"] == "running", "ip": v.get("publicIp"),
                        "machine_type": v["instanceType"],
                        "tags": {k: t for k, t in tags.items() if k not in OURS},
                        "reservation": v.get("capacityReservationId") or None,
                        "user_data": v.get("userData")})
        return out

    def counters(self):
        return self.control("GET", "counters")

    def launches(self, instance_id):
        return self.counters()["instances_created"].get("cb-" + instance_id, 0)

    def dedup_hits(self):
        return self.counters()["dedup_hits"]

    def reservations(self):
        out = []
        for r in self.control("GET", "reservations")["reservations"]:
            if r["state"] in ("cancelled", "expired"):
                continue
            tags = r.get("tags") or {}
            out.append({"id": r["id"], "name": r.get("name"),
                        "reservation": tags.get("cloudbrain-reservation"),
                        "deployment": tags.get("cloudbrain-deployment"), "zone": r["zone"],
                        "count": r["count"], "in_use": r["inUse"],
                        "machine_type": r["instanceType"]})
        return out

    def reservations_made(self, reservation_id):
        return self.counters()["reservations_created"].get("cbr-" + reservation_id, 0)

    # ---- the request log -----------------------------------------------------------------
    def requests_since(self, seq, action):
        log = self.control("GET", "requests?since=%d&path_prefix=/" % seq)["requests"]
        return [e for e in log if e.get("route") == action]

    def create_zones_since(self, seq):
        return [e["zone"] for e in self.requests_since(seq, "RunInstances")]

    def reserve_zones_since(self, seq):
        return [e["zone"] for e in self.requests_since(seq, "CreateCapacityReservation")]

    # ---- faults --------------------------------------------------------------------------
    def lose_create_answers(self, count):
        self.control("POST", "drop", {"count": count, "when": "after",
                                      "action": "RunInstances"})

    def fail_listings(self, what):
        # The listings by deployment (the reconciler's, the janitor's), not reads by id or name.
        action = {"instances": "DescribeInstances",
                  "reservations": "DescribeCapacityReservations"}[what]
        self.control("POST", "fail", {"count": None, "status": 503, "action": action,
                                      "params": {"Filter.1.Name": "^tag:cloudbrain-deployment$"}})

    def slow_reservations(self, seconds):
        self.control("POST", "config", {"reservation_create_delay": FAST[
            "reservation_create_delay"] if seconds is None else seconds})

    def slow_down(self):
        self.control("POST", "config", {"pending_delay": 3.0, "stopping_delay": 2.5})

    def speed_up(self):
        self.control("POST", "config", FAST)

    # ---- behind cloudbrain's back --------------------------------------------------------
    def plant_vm(self, name_hint, deployment=None, instance_id=None, zone=None, age=0):
        tags = {"Name": name_hint}
        if deployment:
            tags["cloudbrain-deployment"] = deployment
        if instance_id:
            tags["cloudbrain-instance"] = instance_id
        planted = self.control("POST", "instances", {"zone": zone or self.zones[0],
                                                     "tags": tags, "launchTime": iso_ago(age),
                                                     "state": "running", "public": False})
        return planted["id"]

    def vm_exists(self, handle):
        return any(v["id"] == handle and v["state"] != "terminated" for v in self.instances())

    def delete_behind_our_back(self, instance_id):
        self.control("POST", "instances/terminate", {"id": self.vm(instance_id)["id"]})
