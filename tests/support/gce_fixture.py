"""The GCE emulator (tests/emulators/gce) as a cloud of the shared scenarios
(tests/support/cloud_fixture.py): a gce provider with a service-account key of the test's own
making, whose public half the emulator checks every JWT against.

stdlib only (plus the openssl binary for the key).
"""
import json
import os
import subprocess
import uuid

from cloud_fixture import CloudFixture, iso_ago
from emulator_process import GCE_EMULATOR

PROJECT = "cb-gce-test"
SA_EMAIL = "cloudbrain-test@cb-gce-test.iam.gserviceaccount.com"
FAST = {"op_pending_delay": 0.05, "provisioning_delay": 0.1, "staging_delay": 0.1,
        "stopping_delay": 0.1, "failure_delay": 0.1, "wait_timeout": 1.0}
RESERVATION_CREATE_DELAY = 0.3  # the emulator's default


def make_key_file(emu, workdir, email, project=PROJECT, register=True):
    """A service-account key file of our own making (RSA key by openssl); with `register`, its
    public half is given to the emulator, which then checks every JWT signed with it. Returns
    (path, private key PEM)."""
    pem_path = os.path.join(workdir, "key-%s.pem" % uuid.uuid4().hex)
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                    "-out", pem_path], check=True, capture_output=True)
    public = subprocess.run(["openssl", "pkey", "-in", pem_path, "-pubout"], check=True,
                            capture_output=True, text=True).stdout
    with open(pem_path) as f:
        private = f.read()
    kid = uuid.uuid4().hex
    if register:
        emu.control("POST", "keys", {"email": email, "public_key_pem": public, "key_id": kid})
    key = {"type": "service_account", "project_id": project, "private_key_id": kid,
           "private_key": private, "client_email": email, "client_id": "1234567890",
           "auth_uri": "https://accounts.google.com/o/oauth2/auth",
           "token_uri": emu.base + "/token"}
    path = os.path.join(workdir, "sa-%s.json" % kid)
    with open(path, "w") as f:
        json.dump(key, f)
    os.chmod(path, 0o644)
    return path, private


def zone_of(path, collection):
    """The zone in a compute API path .../zones/Z/<collection>."""
    return path.split("/zones/")[1].split("/" + collection)[0]


class Fixture(CloudFixture):
    name = "gce"
    type = "gce"
    zones = ["us-central1-a", "us-central1-b", "us-central1-c"]
    image = "family/debian-12"
    machine_types = {"standard": "e2-small", "premium": "n2-standard-4"}
    capacity_reason = "ZONE_RESOURCE_POOL_EXHAUSTED"
    script = GCE_EMULATOR
    emulator_args = ("--config", json.dumps(FAST))
    # The emulator, like a project's default quota, has only 254 external addresses.
    many_vms_settings = {"external-ip": "false"}

    def prepare(self):
        self.key_file, self.private_key = make_key_file(self.emu, self.workdir, SA_EMAIL)

    def section(self, zones=None, **extra):
        s = {"type": "gce", "project": PROJECT, "zones": " ".join(zones or self.zones[:2]),
             "endpoint": self.base, "image-project": "debian-cloud", "ssh-user": "tester",
             "rate-limit": "200", "max-in-flight": "100",
             "standard-machine-type": self.machine_types["standard"],
             "premium-machine-type": self.machine_types["premium"],
             "credentials": self.key_file}
        s.update(extra)
        return s

    def vms(self):
        out = []
        for v in self.control("GET", "instances")["instances"]:
            labels = dict(v.get("labels") or {})
            instance = labels.pop("cloudbrain-instance", None)
            deployment = labels.pop("cloudbrain-deployment", None)
            out.append({"id": str(v["id"]), "name": v["name"], "instance": instance,
                        "deployment": deployment, "zone": v["zone"],
                        "running": v["status"] == "RUNNING", "ip": v.get("natIP"),
                        "machine_type": v["machineType"].rsplit("/", 1)[-1], "tags": labels,
                        "reservation": v.get("reservation") or None})
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
            # GCE reservations carry no labels: the name says whose it is ("cbr-" + id).
            rid = r["name"][len("cbr-"):] if r["name"].startswith("cbr-") else None
            out.append({"id": str(r["id"]), "name": r["name"], "reservation": rid,
                        "deployment": None, "zone": r["zone"], "count": r["count"],
                        "in_use": r["inUseCount"],
                        "machine_type": r["machineType"].rsplit("/", 1)[-1]})
        return out

    def reservations_made(self, reservation_id):
        made = self.counters()["reservations_created"]
        return sum(n for k, n in made.items() if ("cbr-" + reservation_id) in k)

    def requests_since(self, seq, route):
        log = self.control("GET", "requests?since=%d&path_prefix=/compute/" % seq)["requests"]
        return [e for e in log if e.get("route") == route]

    def create_zones_since(self, seq):
        return [zone_of(e["path"], "instances") for e in self.requests_since(seq, "instances.insert")]

    def reserve_zones_since(self, seq):
        return [zone_of(e["path"], "reservations")
                for e in self.requests_since(seq, "reservations.insert")]

    def lose_create_answers(self, count):
        self.control("POST", "drop", {"count": count, "when": "after", "method": "POST",
                                      "path_regex": "/instances$"})

    def fail_listings(self, what):
        self.control("POST", "fail", {"count": None, "status": 503, "method": "GET",
                                      "path_regex": "/zones/%s/%s$" % (self.zones[1], what)})

    def slow_reservations(self, seconds):
        self.control("POST", "config",
                     {"reservation_create_delay": RESERVATION_CREATE_DELAY if seconds is None
                      else seconds})

    def slow_down(self):
        self.control("POST", "config", {"op_pending_delay": 0.3, "provisioning_delay": 1.5,
                                        "staging_delay": 1.5, "stopping_delay": 2.5})

    def speed_up(self):
        self.control("POST", "config", FAST)

    def plant_vm(self, name_hint, deployment=None, instance_id=None, zone=None, age=0):
        labels = {}
        if deployment:
            labels["cloudbrain-deployment"] = deployment
        if instance_id:
            labels["cloudbrain-instance"] = instance_id
        name = "%s-%s" % (name_hint, uuid.uuid4().hex[:6])
        self.control("POST", "instances", {"project": PROJECT, "zone": zone or self.zones[0],
                                           "name": name, "labels": labels,
                                           "creationTimestamp": iso_ago(age), "status": "RUNNING",
                                           "external": False})
        return name

    def vm_exists(self, handle):
        return any(v["name"] == handle for v in self.control("GET", "instances")["instances"])

    def delete_behind_our_back(self, instance_id):
        vm = self.vm(instance_id)
        token = "behind-our-back-" + uuid.uuid4().hex[:8]
        self.control("POST", "tokens", {"token": token})
        status, body, _ = self.emu.request(
            "DELETE", "/compute/v1/projects/%s/zones/%s/instances/%s"
            % (PROJECT, vm["zone"], vm["name"]), headers={"Authorization": "Bearer " + token})
        assert status == 200, (status, body)
