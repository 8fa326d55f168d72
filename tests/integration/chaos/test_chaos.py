"""Nothing lost, nothing doubled, nothing leaked: cloudbrain is killed with SIGKILL at random
moments while it creates and then deletes 300 VMs at the GCE emulator (its own process), and
PostgreSQL is restarted under it. At the end every instance is where it should be and the
emulator holds exactly the VMs it should: one per live instance, none after the deletes.

Prints the figures (instances, kills, duplicates, orphans, time to converge).
stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import random
import threading
import time
import unittest
import uuid

import gce_service
from cloudbrain_test import Database, PgCluster, Service, wait_until
from gce_service import SA_EMAIL, gce_section, make_key_file

COUNT = int(__import__("os").environ.get("CHAOS_COUNT", "300"))  # smaller only by hand
MIN_KILLS = 5


def setUpModule():
    global EMU
    EMU = gce_service.start_emulator()


def tearDownModule():
    gce_service.stop_emulator()


def ours(deployment):
    return [v for v in EMU.control("GET", "instances")["instances"]
            if v["labels"].get("cloudbrain-deployment") == deployment]


class Client:
    """Keeps asking until the service answers: connection errors and 5xx while it is down or
    restarting are retried, with the same Idempotency-Key for creates."""

    def __init__(self, service):
        self.service = service

    def call(self, method, path, body=None, headers=None, ok=(200, 201, 202), timeout=120):
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                r = self.service.request(method, path, body, headers=headers, timeout=10)
                if r.status in ok:
                    return r
                if r.status < 500:
                    raise AssertionError("%s %s -> %r" % (method, path, r))
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("%s %s: no answer in %ss" % (method, path, timeout))
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


class Killer(threading.Thread):
    """SIGKILLs the service at random moments and starts it again, `kills` times."""

    def __init__(self, service, kills, unfinished, lo=0.3, hi=1.0):
        super().__init__(daemon=True)
        self.service, self.kills, self.lo, self.hi = service, kills, lo, hi
        self.unfinished = unfinished  # how much work is left, read just before each kill
        self.left_at_kill = []
        self.done = 0
        self.failure = None
        self.last_restart = None

    def run(self):
        try:
            rng = random.Random()
            for _ in range(self.kills):
                time.sleep(rng.uniform(self.lo, self.hi))
                left = self.unfinished()
                if left == 0:
                    break  # a kill now would prove nothing; the test counts the real ones
                self.left_at_kill.append(left)
                self.service.kill()
                self.done += 1
                self.service.start(wait=True)
                self.last_restart = time.monotonic()
        except Exception as e:  # reported by the test
            self.failure = e


class ChaosBase(unittest.TestCase):
    maxDiff = None

    def start_service(self, db, deployment):
        key, _ = make_key_file(SA_EMAIL)
        # Internal addresses: the emulator, like a project's default quota, has only 254
        # external ones.
        service = Service(db, providers={"gce": gce_section(
            credentials=key, **{"rate-limit": "400", "max-in-flight": "100",
                                "external-ip": "false"})}, settings={
            "deployment": deployment,
            # A dead process's jobs come back quickly; the SIGKILLs cost attempts, so allow more.
            "job-lease": "2s", "job-max-attempts": "30",
            "reconcile-interval": "2s", "orphan-grace": "20s"})
        service.start()
        self.addCleanup(service.stop)
        service.token  # made now, while PostgreSQL is certainly up (the CLI writes it there)
        return service

    def wait_all(self, db, client, deployment, state, n, timeout):
        """Waits until all `n` instances of the run are in `state` (failing at once if one
        errored on the way to running); on timeout, shows the database's view of what is left."""
        def done():
            if state == "running":
                self.no_errors(client, deployment)
            r = client.call("GET", "/instances?state=%s&tag.run=%s&limit=1000"
                            % (state, deployment), ok=(200,))
            return len(r.json()["instances"]) == n
        try:
            wait_until(done, timeout, interval=0.5, what="%d instances %s" % (n, state))
        except AssertionError as e:
            detail = db.query("SELECT state || ': ' || count(*) FROM instances GROUP BY state")
            jobs = db.query("SELECT kind || ' ' || state || ' attempts=' || attempts || ' run_at='"
                            " || run_at || ' lease=' || coalesce(lease_owner, '-') || ' ' || "
                            "coalesce(last_error, '') FROM jobs WHERE state IN "
                            "('queued', 'running') ORDER BY id LIMIT 10")
            raise AssertionError("%s\ninstances:\n%s\nunfinished jobs:\n%s"
                                 % (e, detail, jobs)) from None

    def no_errors(self, client, deployment):
        r = client.call("GET", "/instances?state=errored&tag.run=%s&limit=10" % deployment,
                        ok=(200,))
        errored = r.json()["instances"]
        if errored:
            raise AssertionError("instances errored: %s" % [(i["id"], i["error_reason"])
                                                            for i in errored])

    def check_exactly_one_vm_each(self, deployment, ids):
        vms = ours(deployment)
        names = [v["name"] for v in vms]
        duplicates = len(names) - len(set(names))
        created = EMU.control("GET", "counters")["instances_created"]
        twice = [n for n in set(names) if created.get(n, 0) > 1]
        expected = {"cb-" + i for i in ids}
        orphans = sorted(set(names) - expected)
        missing = sorted(expected - set(names))
        self.assertEqual(duplicates, 0, "VMs made twice: %d" % duplicates)
        self.assertEqual(twice, [], "names created more than once")
        self.assertEqual(orphans, [], "VMs without an instance")
        self.assertEqual(missing, [], "instances without a VM")
        return duplicates + len(twice), len(orphans)


class KillDuringCreateAndDelete(ChaosBase):
    def test_300_creates_and_deletes_with_sigkills(self):
        deployment = "chaos-" + uuid.uuid4().hex[:8]
        db = Database()
        self.addCleanup(db.drop)
        service = self.start_service(db, deployment)
        client = Client(service)

        # A cloud slow enough that every kill lands while work is in flight.
        EMU.control("POST", "config", {"op_pending_delay": 0.3, "provisioning_delay": 1.5,
                                       "staging_delay": 1.5, "stopping_delay": 2.5})
        self.addCleanup(EMU.control, "POST", "config", gce_service.FAST)

        # --- creates, killed at random moments
        # Work left: instances not yet asked for, or asked for and not yet running.
        not_running = lambda: COUNT - int(db.query(  # noqa: E731
            "SELECT count(*) FROM instances WHERE state = 'running'"))
        killer = Killer(service, MIN_KILLS + 2, not_running)
        started = time.monotonic()
        killer.start()
        keys = [str(uuid.uuid4()) for _ in range(COUNT)]

        def create(key):
            return client.call("POST", "/instances", {"provider": "gce",
                                                      "image": "family/debian-12",
                                                      "tags": {"run": deployment}},
                               headers={"Idempotency-Key": key}).json()["id"]
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            ids = list(pool.map(create, keys))
        killer.join(120)
        self.assertIsNone(killer.failure)
        # Every kill counted here landed while work was left (the killer checks first).
        self.assertGreaterEqual(killer.done, MIN_KILLS, killer.left_at_kill)
        create_kills = killer.left_at_kill
        self.assertEqual(len(set(ids)), COUNT, "an Idempotency-Key replay made a second instance")
        self.assertEqual(db.count_rows("instances")["instances"], COUNT)

        self.wait_all(db, client, deployment, "running", COUNT, 300)
        up_converged = time.monotonic() - killer.last_restart
        up_total = time.monotonic() - started
        dup_up, orphans_up = self.check_exactly_one_vm_each(deployment, ids)

        # --- deletes, killed the same way
        not_terminated = lambda: int(db.query(  # noqa: E731
            "SELECT count(*) FROM instances WHERE state <> 'terminated'"))
        killer = Killer(service, MIN_KILLS + 2, not_terminated)
        started = time.monotonic()
        killer.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda i: client.call("DELETE", "/instances/" + i), ids))
        killer.join(120)
        self.assertIsNone(killer.failure)
        self.assertGreaterEqual(killer.done, MIN_KILLS, killer.left_at_kill)

        self.wait_all(db, client, deployment, "terminated", COUNT, 300)
        down_converged = time.monotonic() - killer.last_restart
        down_total = time.monotonic() - started
        wait_until(lambda: ours(deployment) == [], 30, interval=0.5,
                   what="the emulator to hold none of our VMs")
        orphan_events = int(db.query("SELECT count(*) FROM instance_events "
                                     "WHERE kind = 'orphan_deleted'"))
        print("\nchaos: instances not yet running at each kill: %s; not yet terminated: %s"
              % (create_kills, killer.left_at_kill))
        print("chaos: %d instances, %d kills creating + %d deleting, %d duplicate VMs, "
              "%d orphans left, %d orphans deleted by the reconciler; all running %.1fs after "
              "the last restart (%.1fs in all), all terminated %.1fs after the last restart "
              "(%.1fs in all)" % (COUNT, len(create_kills), killer.done, dup_up, orphans_up,
                                  orphan_events, up_converged, up_total, down_converged,
                                  down_total))


class PostgresRestart(ChaosBase):
    def test_postgres_restarted_mid_run_loses_and_doubles_nothing(self):
        cluster = PgCluster().start()
        self.addCleanup(cluster.destroy)
        cluster.deploy_schema()
        db = Database.attach(cluster.url())
        deployment = "pgrestart-" + uuid.uuid4().hex[:8]
        service = self.start_service(db, deployment)
        client = Client(service)
        n = 80
        keys = [str(uuid.uuid4()) for _ in range(n)]
        restarter_error = []

        def restart():
            try:
                time.sleep(1.0)
                cluster.stop("fast")
                time.sleep(2.0)
                cluster.start()
            except Exception as e:
                restarter_error.append(e)
        t = threading.Thread(target=restart, daemon=True)
        t.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda k: client.call(
                "POST", "/instances", {"provider": "gce", "image": "family/debian-12",
                                       "tags": {"run": deployment}},
                headers={"Idempotency-Key": k}).json()["id"], keys))
        t.join(60)
        self.assertEqual(restarter_error, [])
        self.assertEqual(len(set(ids)), n)

        self.wait_all(db, client, deployment, "running", n, 180)
        self.assertEqual(int(db.query("SELECT count(*) FROM instances")), n)
        self.check_exactly_one_vm_each(deployment, ids)


if __name__ == "__main__":
    unittest.main()
