"""Every cloud's emulator behind one interface, so that the scenarios every cloud must pass
(tests/integration/clouds/) are written once.

A cloud plugs in with one file, tests/support/<cloud>_fixture.py, defining a subclass of
CloudFixture named `Fixture`. Nothing else lists the clouds: the suite's CMakeLists.txt and
`fixtures()` below find them by that file name.

What a fixture gives the scenarios is the cloud's own view, normalized:
  vm:          {"id", "instance", "deployment", "zone", "running", "ip", "machine_type", "tags",
                "reservation"}  (`instance` and `deployment` from the cloudbrain markers;
               `tags` holds the request's tags only; `reservation` the cloud's id or name of the
               reservation it consumes, or None)
  reservation: {"id", "reservation", "deployment", "zone", "count", "in_use", "machine_type"}
Every emulator serves the control API of the GCE emulator (tests/emulators/gce/README.md) with
the same shapes where the concept is the same; the fixture maps each scenario's needs onto it.

stdlib only.
"""
import datetime
import glob
import importlib
import os
import shutil
import tempfile

from cloudbrain_test import ServiceTestCase, wait_until
from emulator_process import EmulatorProcess

SUPPORT = os.path.dirname(os.path.abspath(__file__))
SSH_KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4ZUO6i3u0VJEb2+Q "
           "tester@ci")


def fixture_names():
    """The clouds with a tests/support/<cloud>_fixture.py, sorted."""
    return sorted(os.path.basename(p)[:-len("_fixture.py")]
                  for p in glob.glob(os.path.join(SUPPORT, "*_fixture.py"))
                  if os.path.basename(p) != "cloud_fixture.py")


def fixtures():
    """{cloud: Fixture class} for every cloud with a fixture."""
    return {name: importlib.import_module(name + "_fixture").Fixture for name in fixture_names()}


def iso_ago(seconds):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class CloudFixture:
    """One emulator process and what the scenarios need of it. Subclasses set the class
    attributes and implement every method that raises NotImplementedError."""

    name = None            # the cloud: gce, aws, ...
    type = None            # the provider section's type
    zones = []             # at least three, in the order the provider tries them
    image = None           # an image every zone boots
    machine_types = {}     # {"standard": ..., "premium": ...} as vm()["machine_type"] shows them
    capacity_reason = None  # what every "zone out of capacity" error_reason contains
    script = None          # the emulator: tests/emulators/<cloud>/<script>
    emulator_args = ()     # extra arguments for the emulator (fast delays, ...)
    many_vms_settings = {}  # section keys for hundreds of VMs at once (no public addresses, ...)

    def __init__(self):
        self.workdir = None
        self.emu = None

    # ---- the process -------------------------------------------------------------------
    def start(self):
        self.workdir = tempfile.mkdtemp(prefix="cloudbrain-%s-" % self.name)
        # The server runs as another user when the tests run as root: let it read key files.
        os.chmod(self.workdir, 0o755)
        self.emu = EmulatorProcess(*self.emulator_args, workdir=self.workdir,
                                   script=self.script).start()
        self.prepare()
        return self

    def prepare(self):
        """After the emulator is up: register keys, make credential files, ..."""

    def stop(self):
        """Stops the emulator; fails if it failed (a traceback in its log)."""
        if self.emu:
            self.emu.stop()
            log = self.emu.log_text()
            if "Traceback" in log:
                raise AssertionError("the %s emulator failed:\n%s" % (self.name, log[-20000:]))
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def control(self, method, path, body=None):
        return self.emu.control(method, path, body)

    @property
    def base(self):
        return self.emu.base

    # ---- the provider section ------------------------------------------------------------
    def section(self, zones=None, **extra):
        """A complete [provider.NAME] section with working credentials, for `zones` (default:
        the first two); `extra` keys override."""
        raise NotImplementedError

    def service_env(self):
        """Environment the service needs for this cloud (a metadata address, ...)."""
        return {}

    # ---- what the cloud holds --------------------------------------------------------------
    def vms(self):
        """Every VM the cloud holds now (not terminated), normalized."""
        raise NotImplementedError

    def vm(self, instance_id):
        found = [v for v in self.vms() if v["instance"] == instance_id]
        assert len(found) <= 1, found
        return found[0] if found else None

    def launches(self, instance_id):
        """How many VMs the cloud ever made for this instance (2 or more is a duplicate)."""
        raise NotImplementedError

    def dedup_hits(self):
        """How many mutations the cloud answered from its idempotency record."""
        raise NotImplementedError

    def reservations(self):
        """Every capacity reservation the cloud holds now, normalized."""
        raise NotImplementedError

    def reservations_of(self, reservation_id):
        return [r for r in self.reservations() if r["reservation"] == reservation_id]

    def reservations_made(self, reservation_id):
        """How many cloud reservations were ever made for this cloudbrain reservation."""
        raise NotImplementedError

    # ---- the request log ---------------------------------------------------------------
    def seq(self):
        log = self.control("GET", "requests")["requests"]
        return log[-1]["seq"] if log else 0

    def create_zones_since(self, seq):
        """The zone of every create-VM call since `seq`, in order."""
        raise NotImplementedError

    def reserve_zones_since(self, seq):
        """The zone of every create-reservation call since `seq`, in order."""
        raise NotImplementedError

    # ---- faults ------------------------------------------------------------------------
    def set_capacity(self, zones, remaining):
        """`remaining` VM (and reserved) places in each zone; None: unlimited again."""
        self.control("POST", "capacity", {"zones": list(zones), "remaining": remaining})

    def throttle(self, count, retry_after=None):
        """The next `count` calls are refused the cloud's throttling way."""
        body = {"count": count}
        if retry_after is not None:
            body["retry_after"] = retry_after
        self.control("POST", "throttle", body)

    def fail(self, count, status=503):
        """The next `count` calls fail with a 5xx of the cloud's shape."""
        self.control("POST", "fail", {"count": count, "status": status})

    def lose_create_answers(self, count):
        """The next `count` create-VM calls take effect and their answers are lost."""
        raise NotImplementedError

    def reset_connections(self, count):
        """The next `count` calls are cut (RST) before they take effect."""
        self.control("POST", "drop", {"count": count, "when": "before", "reset": True})

    def fail_listings(self, what):
        """Until cleared, every listing of `what` ("instances" or "reservations") fails with a
        5xx, in one zone at least, so the caller's view is partial."""
        raise NotImplementedError

    def slow_reservations(self, seconds):
        """Making a reservation takes this long at the cloud (None: back to normal)."""
        raise NotImplementedError

    def slow_down(self):
        """VMs take seconds to boot and to go, so that a kill lands while work is in flight."""
        raise NotImplementedError

    def speed_up(self):
        """Back to the fast timings the fixture started with."""
        raise NotImplementedError

    def clear_faults(self):
        self.control("DELETE", "faults")

    def faults_fired(self):
        """The fault kinds injected so far into requests, one entry per request and fault, as
        the request log records them ("error", "throttle", "drop", "drop-after", ...)."""
        log = self.control("GET", "requests")["requests"]
        return [f for e in log for f in (e.get("fault") or [])]

    # ---- behind cloudbrain's back ------------------------------------------------------
    def plant_vm(self, name_hint, deployment=None, instance_id=None, zone=None, age=0):
        """A running VM made at the cloud directly, `age` seconds old, with this deployment's
        and instance's markers when given. Returns a handle for vm_exists()."""
        raise NotImplementedError

    def vm_exists(self, handle):
        raise NotImplementedError

    def delete_behind_our_back(self, instance_id):
        """Deletes the instance's VM at the cloud, as someone else would."""
        raise NotImplementedError


class CloudCase(ServiceTestCase):
    """A service whose providers are a cloud's, the cloud's emulator started for the class.
    Scenario classes set `cloud_sections` (name → keyword arguments of Fixture.section) and
    get `self.cloud`."""

    fixture_class = None
    cloud_sections = {"main": {}}
    cloud = None

    @classmethod
    def setUpClass(cls):
        cls.cloud = cls.fixture_class().start()
        try:
            cls.env = dict(cls.env or {}, **cls.cloud.service_env())
            super().setUpClass()
        except BaseException:
            cls.cloud.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.cloud.stop()

    @classmethod
    def service_providers(cls):
        return {name: cls.cloud.section(**kw) for name, kw in cls.cloud_sections.items()}

    # ---- instances ---------------------------------------------------------------------
    def create(self, provider="main", **fields):
        body = {"provider": provider, "image": self.cloud.image}
        body.update(fields)
        r = self.service.request("POST", "/instances", body)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def get(self, instance_id):
        r = self.service.request("GET", "/instances/" + instance_id)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_settled(self, instance_id, timeout=60):
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

    def provider(self, name="main"):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        return {p["name"]: p for p in r.json()["providers"]}[name]

    def count_state(self, state, run, expected):
        r = self.service.request("GET", "/instances?state=%s&tag.run=%s&limit=1000" % (state, run))
        return len(r.json()["instances"]) == expected

    # ---- reservations ------------------------------------------------------------------
    def reserve(self, expect=201, provider="main", **fields):
        body = {"provider": provider, "count": 2}
        body.update(fields)
        r = self.service.request("POST", "/reservations", body)
        self.assertEqual(r.status, expect, r)
        return r.json()

    def reservation(self, rid):
        r = self.service.request("GET", "/reservations/" + rid)
        self.assertEqual(r.status, 200, r)
        return r.json()

    def wait_reservation(self, rid, *states, timeout=60):
        def check():
            body = self.reservation(rid)
            return body if body["state"] in states else None
        return wait_until(check, timeout, interval=0.1,
                          what="reservation %s to be one of %s" % (rid, states))

    def forget_reservation(self, rid):
        """Makes the database forget a live reservation (a restore from an older backup, say),
        so that the cloud's one is an orphan."""
        self.db.query("ALTER TABLE reservations DISABLE TRIGGER reservations_record_event")
        self.db.query(f"UPDATE reservations SET state = 'failed' WHERE id = '{rid}'")
        self.db.query("ALTER TABLE reservations ENABLE TRIGGER reservations_record_event")


def scenarios(module_globals, *bases):
    """For every scenario class in `bases` and every cloud, defines `<Class>_<cloud>` in the
    calling module (what CTest runs: `python3 -m unittest test_x.<Class>_<cloud>`)."""
    for cloud, fixture_class in fixtures().items():
        for base in bases:
            name = "%s_%s" % (base.__name__, cloud)
            module_globals[name] = type(name, (base, CloudCase),
                                        {"fixture_class": fixture_class,
                                         "__module__": module_globals["__name__"]})
