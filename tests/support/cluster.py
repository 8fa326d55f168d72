"""Several cloudbrain processes (nodes) on one database, and a client that spreads requests over
them the way a round-robin load balancer would. Used by tests/integration/cluster.

stdlib only.
"""
import http.client
import json
import signal
import threading
import time

from cloudbrain_test import Service, free_port, wait_until


class Cluster:
    """`n` nodes named node-1 ... node-n, each its own `cloudbrain serve` on its own port, with
    the same providers and settings, on one database."""

    def __init__(self, db, n, providers, settings=None, env=None):
        self.db = db
        self.nodes = []
        for i in range(n):
            s = dict(settings or {})
            s["node-name"] = "node-%d" % (i + 1)
            # GET /nodes is served there only (admin only, until tokens carry roles)
            s.setdefault("admin-listen", "127.0.0.1:%d" % free_port())
            self.nodes.append(Service(db, providers=providers, settings=s, env=env))
        self.stopped = set()  # names of nodes SIGSTOPped by the test, to SIGCONT at the end

    def start(self):
        for n in self.nodes:
            n.start(wait=False)
        for n in self.nodes:
            wait_until(n.ready, 90, what="%s /readyz" % self.name_of(n))
        token = self.nodes[0].token
        for n in self.nodes[1:]:
            n._token = token
        return self

    def close(self):
        for n in self.nodes:
            if self.name_of(n) in self.stopped:
                self.resume(n)
        codes = {}
        for n in self.nodes:
            codes[self.name_of(n)] = n.close()
        return codes

    @staticmethod
    def name_of(node):
        return node.settings["node-name"]

    def node(self, name):
        return next(n for n in self.nodes if self.name_of(n) == name)

    def alive(self):
        """The nodes running and not stopped by the test."""
        return [n for n in self.nodes if n.proc and n.proc.poll() is None
                and self.name_of(n) not in self.stopped]

    def freeze(self, node):
        node.proc.send_signal(signal.SIGSTOP)
        self.stopped.add(self.name_of(node))

    def resume(self, node):
        node.proc.send_signal(signal.SIGCONT)
        self.stopped.discard(self.name_of(node))

    def roles(self, via=None):
        """{(provider, role): {"leader", "leader_since", "leading"}} as GET /providers on `via`
        (any live node by default) shows it."""
        via = via or self.alive()[0]
        r = via.request("GET", "/providers", timeout=10)
        assert r.status == 200, r
        out = {}
        for p in r.json()["providers"]:
            for role in ("reconciler", "janitor"):
                out[(p["name"], role)] = p[role]
        return out

    def list_nodes(self, via=None):
        """GET /nodes on `via`'s admin listener (any live node by default): the answer's body."""
        via = via or self.alive()[0]
        r = via.request("GET", "/nodes", admin=True, timeout=10)
        assert r.status == 200, r
        return r.json()

    def leader(self, provider, role, via=None):
        return self.roles(via)[(provider, role)]["leader"]

    def wait_leader(self, provider, role, timeout=30, other_than=None):
        """Waits until some node (not `other_than`) leads the role; returns its name."""
        def led():
            try:
                name = self.leader(provider, role)
            except (OSError, AssertionError):
                return None
            return name if name and name != other_than else None
        return wait_until(led, timeout, interval=0.05,
                          what="a leader of %s's %s" % (provider, role))

    def leader_since(self, provider, role, node):
        """When `node` took the role, in seconds since the epoch (the database's clock, on this
        machine), once the database records it (right after the lock is won)."""
        sql = ("SELECT extract(epoch FROM leader_since) FROM cluster_roles "
               "WHERE provider = '%s' AND role = '%s' AND leader = '%s'" % (provider, role, node))
        return float(wait_until(lambda: self.db.query(sql), 10, interval=0.05,
                                what="%s recorded as %s's %s" % (node, provider, role)))


class RoundRobin:
    """Sends each request to the next node, as a round-robin load balancer would. A node that
    does not answer in `timeout` (down, or frozen) or answers 5xx is passed over, and one that
    did not answer is left out for `shun` seconds, like a health-checking balancer does; the
    request goes to the next node until one answers or `deadline` passes. Creates carry an
    Idempotency-Key, so a create retried elsewhere is the same instance."""

    def __init__(self, cluster, timeout=2.0, shun=5.0):
        self.cluster = cluster
        self.timeout = timeout
        self.shun = shun
        self.lock = threading.Lock()
        self.next = 0
        self.shunned = {}  # node name -> until (monotonic)
        self.answered_by = {}  # node name -> requests it answered
        self.passed_over = 0

    def pick(self):
        with self.lock:
            nodes = self.cluster.nodes
            now = time.monotonic()
            for _ in range(len(nodes)):
                n = nodes[self.next % len(nodes)]
                self.next += 1
                if self.shunned.get(Cluster.name_of(n), 0) <= now:
                    return n
            n = nodes[self.next % len(nodes)]
            self.next += 1
            return n

    def call(self, method, path, body=None, headers=None, ok=(200, 201, 202), deadline=180):
        end = time.monotonic() + deadline
        pause = 0.02
        last = None
        while True:
            node = self.pick()
            name = Cluster.name_of(node)
            try:
                r = node.request(method, path, body, headers=headers, timeout=self.timeout)
                if r.status in ok:
                    with self.lock:
                        self.answered_by[name] = self.answered_by.get(name, 0) + 1
                    return r
                if r.status < 500:
                    raise AssertionError("%s %s via %s -> %r" % (method, path, name, r))
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
                with self.lock:
                    self.shunned[name] = time.monotonic() + self.shun
            with self.lock:
                self.passed_over += 1
            if time.monotonic() > end:
                raise AssertionError("%s %s: no node answered in %ss (last: %r)"
                                     % (method, path, deadline, last))
            time.sleep(pause)
            pause = min(pause * 2, 0.2)


def max_per_window(times, window=1.0):
    """The most events in any `window` seconds: for each event, those in [t, t + window)."""
    times = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        best = max(best, j - i)
    return best


def metric(service, name, **labels):
    """One sample of GET /metrics on `service` (0 when absent)."""
    r = service.request("GET", "/metrics", auth=False, timeout=10)
    assert r.status == 200, r
    want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
    for line in r.body.splitlines():
        if line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        if "{" in key:
            metric_name, rest = key.split("{", 1)
            got = ",".join(sorted(rest.rstrip("}").split(",")))
        else:
            metric_name, got = key, ""
        if metric_name == name and got == want:
            return float(value)
    return 0.0


def dumps(obj):
    return json.dumps(obj, sort_keys=True)
