"""The OCI emulator (tests/emulators/oci) as a cloud of the shared scenarios
(tests/support/cloud_fixture.py): an oci provider with an API key of the test's own making, whose
public half the emulator checks every request's signature against.

stdlib only (plus the openssl binary, which makes the key and signs the requests this fixture
sends itself).
"""
import base64
import email.utils
import hashlib
import json
import os
import subprocess
import urllib.parse
import uuid

from cloud_fixture import CloudFixture, iso_ago
from emulator_process import emulator_path

TENANCY = "ocid1.tenancy.oc1..aaaaaaaacloudbraintesttenancy"
USER = "ocid1.user.oc1..aaaaaaaacloudbraintestuser"
COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaacloudbraintestcompartment"
SUBNET = "ocid1.subnet.oc1.iad.aaaaaaaacloudbraintestsubnet"
IMAGE = "ocid1.image.oc1.iad.aaaaaaaacloudbraintestimage"
FAST = {"provisioning_delay": 0.1, "terminate_delay": 0.1, "failure_delay": 0.1,
        "reservation_create_delay": 0.3, "reservation_delete_delay": 0.1,
        "work_request_start_delay": 0.02}
SLOW = {"provisioning_delay": 1.5, "terminate_delay": 2.5}
STANDARD = ("VM.Standard.E4.Flex", 1, 8)
PREMIUM = ("VM.Standard.E4.Flex", 4, 32)


def number(n):
    return ("%g" % n)


def shape_text(shape, config):
    """As the driver shows a shape: "VM.Standard.E4.Flex (1 OCPU, 8 GB)", or the bare name of a
    fixed one."""
    if not config or not shape.endswith(".Flex"):
        return shape
    ocpus = config["ocpus"]
    out = "%s (%s %s" % (shape, number(ocpus), "OCPU" if ocpus == 1 else "OCPUs")
    if config.get("memoryInGBs") is not None:
        out += ", %s GB" % number(config["memoryInGBs"])
    return out + ")"


def make_api_key(emu, workdir, tenancy=TENANCY, user=USER, register=True):
    """A new RSA key pair; its private half in a file the service can read, its public half
    registered with the emulator (unless `register` is false). Returns (path, fingerprint)."""
    made = emu.control("POST", "api-keys", {"tenancy": tenancy, "user": user})
    if not register:
        emu.control("DELETE", "keys", {"keyId": made["keyId"]})
    path = os.path.join(workdir, "oci-key-%s.pem" % uuid.uuid4().hex[:8])
    with open(path, "w") as f:
        f.write(made["private_key_pem"])
    os.chmod(path, 0o644)
    return path, made["fingerprint"]


def signed_headers(method, url, body, key_file, key_id):
    """The headers of an OCI request signed the draft-cavage way, the RSA step by openssl."""
    u = urllib.parse.urlsplit(url)
    target = u.path + ("?" + u.query if u.query else "")
    headers = {"date": email.utils.formatdate(usegmt=True), "host": u.netloc}
    names = ["date", "(request-target)", "host"]
    if method in ("POST", "PUT", "PATCH"):
        headers["content-length"] = str(len(body))
        headers["content-type"] = "application/json"
        headers["x-content-sha256"] = base64.b64encode(hashlib.sha256(body).digest()).decode()
        names += ["content-length", "content-type", "x-content-sha256"]
    lines = []
    for n in names:
        value = "%s %s" % (method.lower(), target) if n == "(request-target)" else headers[n]
        lines.append("%s: %s" % (n, value))
    signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key_file],
                               input="\n".join(lines).encode(), check=True,
                               capture_output=True).stdout
    headers["authorization"] = (
        'Signature version="1",headers="%s",keyId="%s",algorithm="rsa-sha256",signature="%s"'
        % (" ".join(names), key_id, base64.b64encode(signature).decode()))
    return headers


class Fixture(CloudFixture):
    name = "oci"
    type = "oci"
    zones = ["Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2", "Uocm:US-ASHBURN-AD-3"]
    image = IMAGE
    machine_types = {"standard": shape_text(STANDARD[0], {"ocpus": STANDARD[1],
                                                          "memoryInGBs": STANDARD[2]}),
                     "premium": shape_text(PREMIUM[0], {"ocpus": PREMIUM[1],
                                                        "memoryInGBs": PREMIUM[2]})}
    capacity_reason = "Out of host capacity"
    script = emulator_path("oci", "oci_emulator.py")
    emulator_args = ("--config", json.dumps(FAST))
    # The emulator has 254 public addresses, like a small tenancy's limit.
    many_vms_settings = {"assign-public-ip": "false"}

    def prepare(self):
        self.key_file, self.fingerprint = make_api_key(self.emu, self.workdir)

    @property
    def key_id(self):
        return "%s/%s/%s" % (TENANCY, USER, self.fingerprint)

    def section(self, zones=None, **extra):
        s = {"type": "oci", "region": "us-ashburn-1", "compartment": COMPARTMENT,
             "subnet": SUBNET, "zones": " ".join(zones or self.zones[:2]), "endpoint": self.base,
             "tenancy": TENANCY, "user": USER, "fingerprint": self.fingerprint,
             "key-file": self.key_file, "ssh-user": "opc", "rate-limit": "200",
             "max-in-flight": "100",
             "standard-shape": STANDARD[0], "standard-ocpus": str(STANDARD[1]),
             "standard-memory-gb": str(STANDARD[2]),
             "premium-shape": PREMIUM[0], "premium-ocpus": str(PREMIUM[1]),
             "premium-memory-gb": str(PREMIUM[2])}
        s.update(extra)
        return s

    # ---- what the cloud holds --------------------------------------------------------------
    def instances(self):
        """The emulator's view of every instance, TERMINATED ones included."""
        return self.control("GET", "instances")["instances"]

    def vms(self):
        out = []
        for v in self.instances():
            if v["status"] == "TERMINATED":
                continue
            labels = dict(v.get("labels") or {})
            instance = labels.pop("cloudbrain-instance", None)
            deployment = labels.pop("cloudbrain-deployment", None)
            out.append({"id": v["id"], "name": v["name"], "instance": instance,
                        "deployment": deployment, "zone": v["zone"],
                        "running": v["status"] == "RUNNING",
                        "ip": v.get("publicIp") or v.get("privateIp"),
                        "machine_type": shape_text(v["shape"], v.get("shapeConfig")),
                        "tags": labels, "reservation": v.get("reservation") or None,
                        "status": v["status"]})
        return out

    def counters(self):
        return self.control("GET", "counters")

    def launches(self, instance_id):
        # Counted by the cloudbrain-instance freeform tag of every instance the emulator made.
        return self.counters()["instances_launched_by_tag"].get(instance_id, 0)

    def dedup_hits(self):
        return self.counters()["dedup_hits"]

    def reservations(self):
        out = []
        for r in self.control("GET", "reservations")["reservations"]:
            if r["status"] == "DELETED":
                continue
            labels = r.get("labels") or {}
            out.append({"id": r["id"], "name": r["name"],
                        "reservation": labels.get("cloudbrain-reservation"),
                        "deployment": labels.get("cloudbrain-deployment"), "zone": r["zone"],
                        "count": r["count"], "in_use": r["inUseCount"],
                        "machine_type": shape_text(r["machineType"], r.get("shapeConfig")),
                        "status": r["status"]})
        return out

    def reservations_made(self, reservation_id):
        return self.counters()["reservations_created"].get("cbr-" + reservation_id, 0)

    # ---- the request log ---------------------------------------------------------------
    def requests_since(self, seq, route):
        log = self.control("GET", "requests?since=%d&path_prefix=/20160918/" % seq)["requests"]
        return [e for e in log if e.get("route") == route]

    def create_zones_since(self, seq):
        return [e["zone"] for e in self.requests_since(seq, "LaunchInstance")]

    def reserve_zones_since(self, seq):
        return [e["zone"] for e in self.requests_since(seq, "CreateComputeCapacityReservation")]

    # ---- faults ------------------------------------------------------------------------
    def lose_create_answers(self, count):
        self.control("POST", "drop", {"count": count, "when": "after", "method": "POST",
                                      "path_regex": "^/20160918/instances$"})

    def fail_listings(self, what):
        # OCI lists a whole compartment at once: every listing of it fails.
        path = {"instances": "instances", "reservations": "computeCapacityReservations"}[what]
        self.control("POST", "fail", {"count": None, "status": 503, "method": "GET",
                                      "path_regex": "^/20160918/%s$" % path})

    def slow_reservations(self, seconds):
        self.control("POST", "config", {"reservation_create_delay":
                                        FAST["reservation_create_delay"] if seconds is None
                                        else seconds})

    def slow_down(self):
        self.control("POST", "config", SLOW)

    def speed_up(self):
        self.control("POST", "config", FAST)

    # ---- behind cloudbrain's back ------------------------------------------------------
    def plant_vm(self, name_hint, deployment=None, instance_id=None, zone=None, age=0):
        labels = {}
        if deployment:
            labels["cloudbrain-deployment"] = deployment
        if instance_id:
            labels["cloudbrain-instance"] = instance_id
        planted = self.control("POST", "instances", {
            "compartmentId": COMPARTMENT, "zone": zone or self.zones[0],
            "name": "%s-%s" % (name_hint, uuid.uuid4().hex[:6]), "labels": labels,
            "timeCreated": iso_ago(age), "status": "RUNNING", "imageId": IMAGE})
        return planted["id"]

    def vm_exists(self, handle):
        return any(v["id"] == handle for v in self.vms())

    def signed_request(self, method, path, body=None):
        """A Core API request signed with the fixture's key, as any OCI client would send it."""
        data = json.dumps(body).encode() if body is not None else b""
        headers = signed_headers(method, self.base + path, data, self.key_file, self.key_id)
        return self.emu.request(method, path, headers=headers, raw_body=data or None)

    def delete_behind_our_back(self, instance_id):
        vm = self.vm(instance_id)
        status, body, _ = self.signed_request(
            "DELETE", "/20160918/instances/%s?preserveBootVolume=false" % vm["id"])
        assert status == 204, (status, body)
