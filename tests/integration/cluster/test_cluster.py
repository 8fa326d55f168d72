"""Three cloudbrain nodes on one PostgreSQL, behind a round-robin client.

- ThreeNodesUnderChaos: 600 creates and then 600 deletes at the GCE emulator while the node that
  leads the provider's reconciler is SIGKILLed (and started again) and, later, the node that
  then leads it is SIGSTOPped for 20 s: every instance ends where it should, the emulator holds
  exactly one VM per instance and none afterwards, nothing orphaned, and the role moves within
  the bounds the README states (2 s after a death, 7 s after a freeze).
- ClusterWideRateLimit: a provider with rate-limit 10 and max-in-flight 6, three nodes under
  load: the emulator never sees more than the documented bound in any one-second window, and
  no more than 6 jobs run at once across the cluster.
- TokenRevocation: a token revoked on one node is refused by the others within 5 s, through
  LISTEN/NOTIFY (each node counts the announcement it heard).
- NodesAndRoles: GET /nodes lists the live nodes and what each leads; a name in use is refused;
  a node that stops cleanly hands its roles over at once.

Prints the figures (nodes, kills, takeover times, the most calls seen in a second).
stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import uuid

import gce_fixture
from cloudbrain_test import Database, Service, require_env, run_serve, wait_until
from cluster import Cluster, RoundRobin, max_per_window, metric

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
COUNT = int(os.environ.get("CLUSTER_CHAOS_COUNT", "600"))  # smaller only by hand
NODES = 3
FREEZE_SECONDS = 20
# The bounds the README states for a role to move to another node.
TAKEOVER_AFTER_DEATH = 2.0
TAKEOVER_AFTER_FREEZE = 7.0
WORKERS = 16


def fake_provider(**extra):
    s = {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms", "rate-limit": "2000",
         "max-in-flight": "100"}
    s.update(extra)
    return s


class GceCluster(unittest.TestCase):
    """A GCE emulator for the class; a database and a cluster per test."""
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.cloud = gce_fixture.Fixture().start()

    @classmethod
    def tearDownClass(cls):
        cls.cloud.stop()

    def start_cluster(self, section, settings):
        db = Database()
        self.addCleanup(db.drop)
        cluster = Cluster(db, NODES, {"main": section}, settings=settings,
                          env=self.cloud.service_env())
        self.addCleanup(self.close, cluster)
        cluster.start()
        return db, cluster

    def close(self, cluster):
        codes = cluster.close()
        # A node that was SIGKILLed and started again stops cleanly like the others.
        bad = {n: c for n, c in codes.items() if c not in (0, None)}
        self.assertEqual(bad, {}, "nodes that did not stop cleanly")

    def ours(self, deployment):
        return [v for v in self.cloud.vms() if v["deployment"] == deployment]

    def calls_since(self, seq):
        log = self.cloud.control("GET", "requests?since=%d&path_prefix=/compute/" % seq)
        return [e["t"] for e in log["requests"]]


class ThreeNodesUnderChaos(GceCluster):

    def test_600_creates_and_deletes_with_a_node_killed_and_one_frozen(self):
        deployment = "cluster-" + uuid.uuid4().hex[:8]
        section = self.cloud.section(**{"rate-limit": "400", "max-in-flight": "100"},
                                     **self.cloud.many_vms_settings)
        db, cluster = self.start_cluster(section, {
            "deployment": deployment, "job-lease": "2s", "job-max-attempts": "30",
            "reconcile-interval": "2s", "janitor-interval": "2s", "orphan-grace": "20s"})
        client = RoundRobin(cluster)
        first = cluster.wait_leader("main", "reconciler")
        cluster.wait_leader("main", "janitor")
        seq = self.cloud.seq()
        figures = {}

        # --- creates; the reconciler's leader is SIGKILLed once a third are asked for
        keys = [str(uuid.uuid4()) for _ in range(COUNT)]
        asked = []

        def create(key):
            r = client.call("POST", "/instances", {"provider": "main", "image": self.cloud.image,
                                                   "tags": {"run": deployment}},
                            headers={"Idempotency-Key": key})
            asked.append(key)
            return r.json()["id"]

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [pool.submit(create, k) for k in keys]
            wait_until(lambda: len(asked) >= COUNT // 3, 300, interval=0.05,
                       what="a third of the creates asked for")
            victim = cluster.node(cluster.leader("main", "reconciler"))
            killed_at = time.time()
            victim.kill()
            survivor = cluster.wait_leader("main", "reconciler", other_than=Cluster.name_of(victim))
            took = cluster.leader_since("main", "reconciler", survivor) - killed_at
            figures["kill"] = (Cluster.name_of(victim), survivor, took)
            self.assertLessEqual(took, TAKEOVER_AFTER_DEATH,
                                 "the reconciler moved from a killed node in %.2fs" % took)
            time.sleep(2)
            victim.start(wait=False)  # back while the creates go on
            ids = [f.result() for f in futures]
        wait_until(victim.ready, 90, what="the killed node back")
        self.assertEqual(len(set(ids)), COUNT, "an Idempotency-Key replay made a second instance")
        self.assertEqual(db.count_rows("instances")["instances"], COUNT)
        self.wait_all(db, deployment, "running", COUNT, 300)
        up = time.monotonic() - started
        self.check_exactly_one_vm_each(deployment, ids)

        # --- deletes; the node that leads the reconciler now is frozen for 20 s
        started = time.monotonic()
        frozen = cluster.node(cluster.leader("main", "reconciler"))
        frozen_name = Cluster.name_of(frozen)
        self.assertNotEqual(frozen_name, figures["kill"][0], "the frozen node is another one")
        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
            futures = [pool.submit(client.call, "DELETE", "/instances/" + i) for i in ids]
            time.sleep(0.5)
            frozen_at = time.time()
            cluster.freeze(frozen)
            taker = cluster.wait_leader("main", "reconciler", timeout=30, other_than=frozen_name)
            took = cluster.leader_since("main", "reconciler", taker) - frozen_at
            figures["freeze"] = (frozen_name, taker, took)
            self.assertLessEqual(took, TAKEOVER_AFTER_FREEZE,
                                 "the reconciler moved from a frozen node in %.2fs" % took)
            time.sleep(max(0.0, FREEZE_SECONDS - (time.time() - frozen_at)))
            cluster.resume(frozen)
            for f in futures:
                f.result()
        # Awake again, the frozen node knows at once it leads nothing: one leader, as before.
        wait_until(lambda: metric(frozen, "cloudbrain_leading", provider="main",
                                  role="reconciler") == 0, 10, what="the frozen node to step down")
        self.assertEqual(cluster.leader("main", "reconciler", via=frozen), taker)
        self.wait_all(db, deployment, "terminated", COUNT, 300)
        down = time.monotonic() - started
        wait_until(lambda: self.ours(deployment) == [], 60, interval=0.5,
                   what="the cloud to hold none of our VMs")
        twice = [i for i in ids if self.cloud.launches(i) > 1]
        self.assertEqual(twice, [], "instances launched more than once")
        orphans = int(db.query("SELECT count(*) FROM instance_events "
                               "WHERE kind = 'orphan_deleted'"))
        per_second = max_per_window(self.calls_since(seq))
        r = cluster.alive()[0].request("GET", "/providers")
        self.assertLessEqual(per_second, r.json()["providers"][0]["pacing"]["window_bound"])
        print("\ncluster chaos: %d nodes, %d instances; SIGKILL of %s: reconciler to %s in "
              "%.2fs; SIGSTOP of %s for %ds: reconciler to %s in %.2fs; all running in %.1fs, "
              "all terminated in %.1fs; 0 duplicates, %d orphans deleted, none left; most "
              "calls in a second at the emulator: %d (rate-limit 400); requests passed over "
              "by the client: %d; answered per node: %s"
              % (NODES, COUNT, figures["kill"][0], figures["kill"][1], figures["kill"][2],
                 frozen_name, FREEZE_SECONDS, taker, figures["freeze"][2], up, down, orphans,
                 per_second, client.passed_over, sorted(client.answered_by.items())))

    def check_exactly_one_vm_each(self, deployment, ids):
        held = [v["instance"] for v in self.ours(deployment)]
        self.assertEqual(len(held) - len(set(held)), 0, "VMs made twice")
        self.assertEqual(sorted(set(held) - set(ids), key=str), [], "VMs without an instance")
        self.assertEqual(sorted(set(ids) - set(held)), [], "instances without a VM")
        self.assertEqual([i for i in ids if self.cloud.launches(i) > 1], [],
                         "instances launched more than once")

    def wait_all(self, db, run, state, n, timeout):
        def done():
            errored = db.query("SELECT count(*) FROM instances WHERE state = 'errored'")
            self.assertEqual(errored, "0", db.query(
                "SELECT id || ' ' || coalesce(error_reason, '') FROM instances "
                "WHERE state = 'errored' LIMIT 5"))
            return int(db.query("SELECT count(*) FROM instances WHERE state = '%s' "
                                "AND tags->>'run' = '%s'" % (state, run))) == n
        try:
            wait_until(done, timeout, interval=0.5, what="%d instances %s" % (n, state))
        except AssertionError as e:
            jobs = db.query("SELECT kind || ' ' || state || ' attempts=' || attempts || ' lease='"
                            " || coalesce(lease_owner, '-') || ' ' || coalesce(last_error, '') "
                            "FROM jobs WHERE state IN ('queued', 'running') ORDER BY id LIMIT 10")
            raise AssertionError("%s\nunfinished jobs:\n%s" % (e, jobs)) from None


class ClusterWideRateLimit(GceCluster):
    RATE = 10
    MAX_IN_FLIGHT = 6
    INSTANCES = 40

    def test_three_nodes_keep_to_one_rate_limit_and_one_max_in_flight(self):
        deployment = "paced-" + uuid.uuid4().hex[:8]
        section = self.cloud.section(**{"rate-limit": str(self.RATE),
                                        "max-in-flight": str(self.MAX_IN_FLIGHT)})
        db, cluster = self.start_cluster(section, {"deployment": deployment,
                                                   "reconcile-interval": "1h"})
        client = RoundRobin(cluster)
        seq = self.cloud.seq()
        in_flight = []  # jobs running under a live lease, sampled across the cluster
        stop = []

        def sample():
            while not stop:
                in_flight.append(int(db.query(
                    "SELECT count(*) FROM jobs WHERE state = 'running' "
                    "AND lease_expires_at >= now()")))
                time.sleep(0.1)

        with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS + 1) as pool:
            sampler = pool.submit(sample)
            try:
                ids = list(pool.map(lambda _: client.call(
                    "POST", "/instances", {"provider": "main", "image": self.cloud.image,
                                           "tags": {"run": deployment}}).json()["id"],
                    range(self.INSTANCES)))
                wait_until(lambda: int(db.query(
                    "SELECT count(*) FROM instances WHERE state = 'running'")) == self.INSTANCES,
                    180, interval=0.5, what="%d instances running" % self.INSTANCES)
                list(pool.map(lambda i: client.call("DELETE", "/instances/" + i), ids))
                wait_until(lambda: int(db.query(
                    "SELECT count(*) FROM instances WHERE state = 'terminated'")) ==
                    self.INSTANCES, 180, interval=0.5, what="all terminated")
            finally:
                stop.append(True)
                sampler.result()
        calls = self.calls_since(seq)
        r = cluster.nodes[0].request("GET", "/providers")
        window_bound = r.json()["providers"][0]["pacing"]["window_bound"]
        self.assertEqual(window_bound, self.RATE + self.RATE // 10 + 1)
        busiest = max_per_window(calls)
        claimed = {Cluster.name_of(n): metric(n, "cloudbrain_jobs_claimed_total", provider="main")
                   for n in cluster.nodes}
        print("\ncluster rate limit: %d nodes, rate-limit %d, %d calls in %.1fs, most in any "
              "second at the emulator: %d (bound %d); most jobs running at once: %d "
              "(max-in-flight %d); jobs claimed per node: %s"
              % (NODES, self.RATE, len(calls), max(calls) - min(calls), busiest, window_bound,
                 max(in_flight), self.MAX_IN_FLIGHT, sorted(claimed.items())))
        self.assertLessEqual(busiest, window_bound)
        # Under load, or this proves nothing: the limit was reached, by several nodes at once.
        # (Not necessarily all three: a node whose job ends claims the next one at once, while
        # the others claim on a notification or their one-second tick, so with every cluster-wide
        # place taken the nodes that began with work tend to keep it and one may claim none.)
        self.assertGreaterEqual(busiest, self.RATE - 1)
        self.assertGreaterEqual((len(calls) - 1) / (max(calls) - min(calls)), self.RATE * 0.6)
        self.assertGreaterEqual(sum(1 for n in claimed.values() if n > 0), 2, claimed)
        self.assertLessEqual(max(in_flight), self.MAX_IN_FLIGHT)
        self.assertGreaterEqual(max(in_flight), 2)


class TokenRevocation(unittest.TestCase):

    def test_a_token_revoked_on_one_node_is_refused_by_all_within_5_s(self):
        db = Database()
        self.addCleanup(db.drop)
        cluster = Cluster(db, NODES, {"gce": fake_provider()})
        self.addCleanup(cluster.close)
        cluster.start()
        token = cluster.nodes[0].create_token("to be revoked")
        token_id = token.split("-", 1)[0]
        # Every node remembers the token (scrypt paid once, then answered from memory).
        for n in cluster.nodes:
            for _ in range(2):
                self.assertEqual(n.request("GET", "/providers", token=token).status, 200)
        heard = {Cluster.name_of(n): metric(n, "cloudbrain_token_revocations_heard_total")
                 for n in cluster.nodes}
        revoked_at = time.monotonic()
        out = cluster.nodes[1].cli("token", "revoke", token_id)
        self.assertIn("revoked token", out.stdout)
        refused_after = {}
        for n in cluster.nodes:
            wait_until(lambda: n.request("GET", "/providers", token=token).status == 401, 5,
                       interval=0.02, what="%s to refuse the token" % Cluster.name_of(n))
            refused_after[Cluster.name_of(n)] = time.monotonic() - revoked_at
        for n in cluster.nodes:
            name = Cluster.name_of(n)
            # The announcement, not only the periodic re-check, is what made it so.
            wait_until(lambda: metric(n, "cloudbrain_token_revocations_heard_total")
                       >= heard[name] + 1, 5, what="%s to hear the revocation" % name)
        print("\ntoken revocation: refused by every node within %.2fs (%s)"
              % (max(refused_after.values()),
                 ", ".join("%s %.2fs" % kv for kv in sorted(refused_after.items()))))
        self.assertLessEqual(max(refused_after.values()), 5)
        # Other tokens keep working everywhere.
        for n in cluster.nodes:
            self.assertEqual(n.request("GET", "/providers").status, 200)


class NodesAndRoles(unittest.TestCase):

    def test_nodes_roles_names_and_a_clean_handover(self):
        db = Database()
        self.addCleanup(db.drop)
        cluster = Cluster(db, NODES, {"gce": fake_provider(), "other": fake_provider()})
        self.addCleanup(cluster.close)
        cluster.start()
        for provider in ("gce", "other"):
            for role in ("reconciler", "janitor"):
                cluster.wait_leader(provider, role)
        # Admin only: on the admin listener without a token, on the API's with an admin token.
        r = cluster.nodes[2].request("GET", "/nodes")
        self.assertEqual((r.status, r.json()["code"]), (403, "role_not_allowed"))
        admin = cluster.nodes[2].create_token("operator", "--role", "admin")
        r = cluster.nodes[2].request("GET", "/nodes", token=admin)
        self.assertEqual(r.status, 200)
        self.assertEqual(sorted(n["name"] for n in r.json()["nodes"]),
                         ["node-1", "node-2", "node-3"])
        body = cluster.list_nodes(via=cluster.nodes[2])
        self.assertEqual(body["node"], "node-3")
        nodes = {n["name"]: n for n in body["nodes"]}
        self.assertEqual(sorted(nodes), ["node-1", "node-2", "node-3"])
        for name, n in nodes.items():
            self.assertEqual(n["state"], "live", n)
            self.assertEqual(n["address"], "127.0.0.1:%d" % cluster.node(name).port)
            self.assertTrue(n["version"])
        # Each of the four roles is led by exactly one node, the one /providers names.
        led = sorted((l["provider"], l["role"], name) for name, n in nodes.items()
                     for l in n["leads"])
        roles = cluster.roles()
        self.assertEqual(led, sorted((p, role, v["leader"]) for (p, role), v in roles.items()))
        self.assertEqual(len(led), 4)
        # /providers on the leader says it leads; elsewhere, that it does not.
        for (p, role), v in roles.items():
            for n in cluster.nodes:
                mine = cluster.roles(via=n)[(p, role)]
                self.assertEqual(mine["leading"], Cluster.name_of(n) == v["leader"])
                self.assertEqual(mine["leader"], v["leader"])
        leader = cluster.node(roles[("gce", "reconciler")]["leader"])
        self.assertEqual(metric(leader, "cloudbrain_leading", provider="gce", role="reconciler"), 1)
        self.assertEqual(metric(leader, "cloudbrain_provider_leader", provider="gce",
                                role="reconciler", node=Cluster.name_of(leader)), 1)
        self.assertEqual(metric(leader, "cloudbrain_cluster_nodes", state="live"), 3)
        self.assertEqual(metric(leader, "cloudbrain_node_info", node=Cluster.name_of(leader)), 1)
        # Every log line names its node.
        lines = [line for line in leader.log_lines() if line.startswith("{")]
        self.assertTrue(lines)
        self.assertTrue(all('"node":"%s"' % Cluster.name_of(leader) in line for line in lines))

        # A second process under a name in use is refused, and says why.
        twin = Service(db, providers={"gce": fake_provider()},
                       settings={"node-name": "node-1"})
        code, _, err, _ = run_serve(["--config", twin.config_path], timeout=60)
        self.assertEqual(code, 1, err)
        self.assertIn("node-1", err)
        self.assertIn("in use", err)

        # A node that stops cleanly lets go of its roles at once, and of its row.
        gone = Cluster.name_of(leader)
        stopped_at = time.time()
        self.assertEqual(leader.stop(signal.SIGTERM), 0)
        taker = cluster.wait_leader("gce", "reconciler", timeout=10, other_than=gone)
        took = cluster.leader_since("gce", "reconciler", taker) - stopped_at
        self.assertLessEqual(took, TAKEOVER_AFTER_DEATH)
        body = cluster.list_nodes(via=cluster.nodes[0 if gone != "node-1" else 1])
        self.assertNotIn(gone, [n["name"] for n in body["nodes"]])
        print("\nclean stop: %s's reconciler role to %s in %.2fs" % (gone, taker, took))


class ThreeNodeExample(unittest.TestCase):
    """deploy/cluster/run-three-nodes.sh as documented: three nodes and HAProxy, round robin."""

    def test_the_example_serves_through_haproxy_and_stops_whole(self):
        db = Database()
        self.addCleanup(db.drop)
        script = os.path.join(os.environ.get("CLOUDBRAIN_SOURCE_DIR", REPO),
                              "deploy", "cluster", "run-three-nodes.sh")
        workdir = tempfile.mkdtemp(prefix="cb-three-")
        config = os.path.join(workdir, "cloudbrain.conf")
        with open(config, "w") as f:
            f.write("[provider.gce]\ntype = fake\nzones = zone-a\n")
        base = free_ports_in_a_row(7)  # HAProxy, the three nodes, their admin listeners
        listen = "127.0.0.1:%d" % base
        env = dict(os.environ, DATABASE_URL=db.url, CLOUDBRAIN=require_env("CLOUDBRAIN_BIN"),
                   LISTEN=listen, BASE_PORT=str(base), ADMIN_BASE_PORT=str(base + 3),
                   RUN_DIR=os.path.join(workdir, "run"))
        proc = subprocess.Popen(["bash", script, config], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)

        def stop():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        self.addCleanup(stop)
        front = Service(db, providers={})
        front.port = base  # HAProxy's port: requests through the balancer
        nodes = []
        for i in (1, 2, 3):
            n = Service(db, providers={},
                        settings={"admin-listen": "127.0.0.1:%d" % (base + 3 + i)})
            n.port = base + i
            nodes.append(n)

        def ready():
            if proc.poll() is not None:
                raise AssertionError("the script exited with %d:\n%s"
                                     % (proc.returncode, proc.stdout.read()))
            try:
                return front.request("GET", "/readyz", auth=False, timeout=2).status == 200
            except OSError:
                return False
        wait_until(ready, 90, interval=0.2, what="the three nodes behind HAProxy to be ready")
        # HAProxy sends to a node once two health checks (a second apart) passed: all three.
        wait_until(lambda: all(n.request("GET", "/readyz", admin=True, timeout=2).status == 200
                               for n in nodes), 30, interval=0.2, what="every node ready")
        time.sleep(3)
        token = front.create_token("example")

        def answered():
            return [metric(n, "cloudbrain_http_requests_total", method="GET", route="/providers",
                           status="200") for n in nodes]
        before = answered()
        for _ in range(9):
            self.assertEqual(front.request("GET", "/providers", token=token, timeout=10).status,
                             200)
        # Round robin: each node answered some of them (in order, three each).
        spread = [a - b for a, b in zip(answered(), before)]
        self.assertEqual(sum(spread), 9, spread)
        self.assertTrue(all(n >= 1 for n in spread), spread)
        # GET /nodes on a node's admin listener, or through HAProxy with an admin token only.
        self.assertEqual(front.request("GET", "/nodes", token=token).status, 403)
        body = nodes[1].request("GET", "/nodes", admin=True).json()
        self.assertEqual(body["node"], "node-2")
        self.assertEqual([(n["name"], n["state"], n["address"]) for n in body["nodes"]],
                         [("node-%d" % i, "live", "127.0.0.1:%d" % (base + i))
                          for i in (1, 2, 3)])
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        self.assertIn("stopping", out)
        for i in range(7):
            with self.assertRaises(OSError, msg="port %d still open" % (base + i)):
                socket.create_connection(("127.0.0.1", base + i), timeout=1).close()
        self.assertEqual(db.query("SELECT count(*) FROM nodes"), "0", "clean stops leave no row")


def free_ports_in_a_row(n):
    """The first of `n` consecutive loopback ports that are free now."""
    for _ in range(50):
        first = random.randrange(20000, 60000 - n)
        try:
            socks = []
            for p in range(first, first + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no %d free ports in a row" % n)


if __name__ == "__main__":
    unittest.main()
