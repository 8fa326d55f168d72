"""The GCE emulator as the cloud of a service test: one emulator process per test module, a
service-account key of the test's own making, the provider section, and views of the
emulator's state. Used by tests/integration/gce and tests/integration/chaos.

stdlib only.
"""
import json
import os
import shutil
import tempfile

import gce_fixture
from cloudbrain_test import ServiceTestCase, wait_until
from emulator_process import EmulatorProcess
from gce_fixture import FAST, PROJECT, SA_EMAIL  # noqa: F401 (used by the tests)

ZONES = ["us-central1-a", "us-central1-b"]
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4ZUO6i3u0VJEb2+Q tester@ci"

EMU = None
WORKDIR = None


def start_emulator():
    """Call from setUpModule."""
    global EMU, WORKDIR
    WORKDIR = tempfile.mkdtemp(prefix="cloudbrain-gce-")
    EMU = EmulatorProcess("--config", json.dumps(FAST), workdir=WORKDIR).start()
    return EMU


def stop_emulator():
    """Call from tearDownModule; fails if the emulator itself failed."""
    if EMU:
        EMU.stop()
        with open(os.path.join(EMU.dir, "emulator.log"), errors="replace") as f:
            log = f.read()
        if "Traceback" in log:
            raise AssertionError("the emulator failed:\n" + log[-20000:])
    shutil.rmtree(WORKDIR, ignore_errors=True)


def make_key_file(email, register=True):
    """A service-account key file of our own making; see gce_fixture.make_key_file."""
    return gce_fixture.make_key_file(EMU, WORKDIR, email, register=register)


def gce_section(**extra):
    s = {"type": "gce", "project": PROJECT, "zones": " ".join(ZONES), "endpoint": EMU.base,
         "image-project": "debian-cloud", "ssh-user": "tester", "rate-limit": "200",
         "max-in-flight": "100", "standard-machine-type": "e2-small",
         "premium-machine-type": "n2-standard-4"}
    s.update(extra)
    return s


def emu_instances(**match):
    out = []
    for i in EMU.control("GET", "instances")["instances"]:
        if all(i.get(k) == v for k, v in match.items()):
            out.append(i)
    return out


def emu_vm(instance_id):
    found = emu_instances(name="cb-" + instance_id)
    return found[0] if found else None


def log_since(seq, prefix="/compute/"):
    return EMU.control("GET", "requests?since=%d&path_prefix=%s" % (seq, prefix))["requests"]


def last_seq():
    log = EMU.control("GET", "requests")["requests"]
    return log[-1]["seq"] if log else 0


class GceCase(ServiceTestCase):
    """One database and one service with GCE providers per class."""
    maxDiff = None

    def create(self, provider="gce", **fields):
        body = {"provider": provider, "image": "family/debian-12"}
        body.update(fields)
        r = self.service.request("POST", "/instances", body)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def get(self, instance_id):
        r = self.service.request("GET", "/instances/" + instance_id)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_settled(self, instance_id, timeout=60):
        """Waits until the instance is running or errored and returns it."""
        def check():
            i = self.get(instance_id)
            return i if i["state"] in ("running", "errored") else None
        return wait_until(check, timeout, interval=0.1, what="instance %s to settle" % instance_id)

    def wait_running(self, instance_id, timeout=60):
        i = self.wait_settled(instance_id, timeout)
        self.assertEqual(i["state"], "running", i)
        return i

    def wait_terminated(self, instance_id, timeout=60):
        def check():
            i = self.get(instance_id)
            return i if i["state"] == "terminated" else None
        return wait_until(check, timeout, interval=0.1, what="instance %s terminated" % instance_id)

    def provider(self, name="gce"):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        return {p["name"]: p for p in r.json()["providers"]}[name]
