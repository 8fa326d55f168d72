"""GET /metrics: Prometheus text format 0.0.4 that promtool accepts, without a token, on the API
listener and on admin-listen, and figures that follow the traffic the test sends."""

import http.client
import re
import subprocess
import time
import uuid

from cloudbrain_test import ServiceTestCase, free_port, wait_until

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def parse(text):
    """{(name, frozenset of (label, value)): float}, and {name: type} from the TYPE lines."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"not a sample line: {line!r}"
        labels = frozenset(
            (k, re.sub(r'\\\\|\\"|\\n', lambda e: UNESCAPE[e.group(0)], v))
            for k, v in LABEL.findall(m.group(2) or ""))
        key = (m.group(1), labels)
        assert key not in samples, f"duplicate series: {line!r}"
        samples[key] = float(m.group(3))
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


class Metrics(ServiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin_port = free_port()
        # The janitor would cancel the reservation this test moves past its end.
        cls.settings = {"admin-listen": f"127.0.0.1:{cls.admin_port}", "janitor-interval": "1h",
                        "reservation-unused-grace": "1h"}
        super().setUpClass()

    def get_from(self, port, path, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.getheader("Content-Type"), r.read().decode()
        finally:
            conn.close()

    def scrape(self, port=None):
        status, ctype, body = self.get_from(port or self.service.port, "/metrics")
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(ctype, "text/plain; version=0.0.4")
        return body

    def promtool_check(self, text):
        out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                             text=True, timeout=60)
        self.assertEqual(out.returncode, 0, f"promtool: {out.stdout}{out.stderr}")

    def http_count(self, samples, method, route, status):
        return value(samples, "cloudbrain_http_requests_total", method=method, route=route,
                     status=str(status))

    def test_traffic_moves_the_figures_and_promtool_accepts_them(self):
        before, _ = parse(self.scrape())
        n = 3
        ids = [self.create()["id"] for _ in range(n)]
        for i in ids:
            self.wait_state(i, "running")

        # Running instances, read from PostgreSQL at most a couple of seconds late.
        def running_counted():
            s, _ = parse(self.scrape())
            return value(s, "cloudbrain_instances", provider="gce", state="running") == n
        wait_until(running_counted, 15, interval=0.5, what="cloudbrain_instances running == 3")

        for i in ids:
            self.assertEqual(self.service.request("DELETE", f"/instances/{i}").status, 202)
        for i in ids:
            self.wait_state(i, "terminated")
        missing = self.service.request("GET", f"/instances/{uuid.uuid4()}")
        self.assertEqual(missing.status, 404)
        self.assertEqual(self.service.request("GET", "/instances", auth=False).status, 401)
        self.assertEqual(self.service.request("GET", "/no/such/thing").status, 404)
        refused = self.service.request("POST", "/instances", {"provider": "nowhere", "image": "x"})
        self.assertEqual(refused.status, 422)

        def delta(method, route, status, now=None):
            return (self.http_count(after if now is None else now, method, route, status)
                    - self.http_count(before, method, route, status))

        # A response is counted just after it is written: wait for the last ones to land.
        def settled():
            text = self.scrape()
            now, _ = parse(text)
            done = (delta("POST", "/instances", 201, now) >= n
                    and delta("DELETE", "/instances/:id", 202, now) >= n
                    and delta("GET", "/instances/:id", 404, now) >= 1
                    and delta("GET", "/instances", 401, now) >= 1
                    and delta("GET", "unmatched", 404, now) >= 1
                    and delta("POST", "/instances", 422, now) >= 1)
            return text if done else None
        text = wait_until(settled, 10, interval=0.2, what="the requests counted")
        self.promtool_check(text)
        after, types = parse(text)

        # Requests by route template and status, counted exactly.
        self.assertEqual(delta("POST", "/instances", 201), n)
        self.assertEqual(delta("DELETE", "/instances/:id", 202), n)
        self.assertEqual(delta("GET", "/instances/:id", 404), 1)
        self.assertEqual(delta("GET", "/instances", 401), 1)
        self.assertEqual(delta("GET", "unmatched", 404), 1)
        self.assertGreaterEqual(delta("GET", "/instances/:id", 200), n)
        self.assertGreaterEqual(value(after, "cloudbrain_http_request_duration_seconds_count",
                                      method="POST", route="/instances"), n)
        # Never a raw path or an id in a label.
        for (name, labels), _ in after.items():
            for k, v in labels:
                self.assertNotRegex(v, r"[0-9a-f]{8}-[0-9a-f]{4}-", f"{name} {k}={v}")
                if k == "route":
                    self.assertTrue(v.startswith("/") or v in ("unmatched", "invalid", "rejected"),
                                    v)

        # Cloud calls of the fake provider, and their latency.
        creates = value(after, "cloudbrain_cloud_calls_total", provider="gce", operation="create",
                        outcome="ok")
        deletes = value(after, "cloudbrain_cloud_calls_total", provider="gce", operation="delete",
                        outcome="ok")
        self.assertGreaterEqual(creates, n)
        self.assertGreaterEqual(deletes, n)
        self.assertGreaterEqual(value(after, "cloudbrain_cloud_call_duration_seconds_count",
                                      provider="gce", operation="create"), n)

        # Jobs.
        def grown(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)
        self.assertEqual(grown("cloudbrain_jobs_finished_total", provider="gce",
                               kind="create_instance", outcome="succeeded"), n)
        self.assertEqual(grown("cloudbrain_jobs_finished_total", provider="gce",
                               kind="delete_instance", outcome="succeeded"), n)
        self.assertGreaterEqual(grown("cloudbrain_jobs_claimed_total", provider="gce"), 2 * n)
        self.assertEqual(value(after, "cloudbrain_provider_circuit_state", provider="gce",
                               state="ok"), 1)
        self.assertEqual(value(after, "cloudbrain_provider_circuit_state", provider="gce",
                               state="open"), 0)

        # The database pool.
        self.assertEqual(value(after, "cloudbrain_db_connections_max"), 16)
        self.assertGreater(value(after, "cloudbrain_db_queries_total"), 0)
        self.assertEqual(value(after, "cloudbrain_db_query_duration_seconds_count"),
                         value(after, "cloudbrain_db_query_duration_seconds_bucket", le="+Inf"))
        self.assertGreater(value(after, "cloudbrain_db_query_duration_seconds_count"), 0)
        self.assertGreaterEqual(value(after, "cloudbrain_db_connections", state="idle")
                                + value(after, "cloudbrain_db_connections", state="in_use"), 1)

        # The group-commit queues: the creates and deletes above went through theirs.
        queues = ("instance_creates", "instance_reads", "instance_deletes", "audit_records")
        for q in queues:
            for name in ("cloudbrain_batch_queue_batches_total",
                         "cloudbrain_batch_queue_items_total",
                         "cloudbrain_batch_queue_refused_total",
                         "cloudbrain_batch_queue_expired_total"):
                self.assertEqual(types[name], "counter", name)
                self.assertIn((name, frozenset({("queue", q)})), after, (name, q))
            self.assertEqual(value(after, "cloudbrain_batch_queue_waiting", queue=q), 0, q)
            # Sizes: one observation per batch, items summed.
            self.assertEqual(value(after, "cloudbrain_batch_queue_batch_size_count", queue=q),
                             value(after, "cloudbrain_batch_queue_batches_total", queue=q), q)
            self.assertEqual(value(after, "cloudbrain_batch_queue_batch_size_sum", queue=q),
                             value(after, "cloudbrain_batch_queue_items_total", queue=q), q)
        self.assertEqual(types["cloudbrain_batch_queue_batch_size"], "histogram")
        self.assertEqual(grown("cloudbrain_batch_queue_items_total", queue="instance_creates"), n)
        self.assertEqual(grown("cloudbrain_batch_queue_items_total", queue="instance_deletes"), n)
        self.assertGreaterEqual(grown("cloudbrain_batch_queue_batches_total",
                                      queue="instance_deletes"), 1)
        # The creates and deletes wrote their audit records with their changes; the refused
        # create's went through the audit queue.
        self.assertEqual(grown("cloudbrain_batch_queue_items_total", queue="audit_records"), 1)
        self.assertGreaterEqual(grown("cloudbrain_batch_queue_items_total", queue="instance_reads"),
                                n + 1)

        # Build and process.
        builds = [labels for (name, labels) in after if name == "cloudbrain_build_info"]
        self.assertEqual(len(builds), 1)
        self.assertEqual(value(after, "cloudbrain_build_info", **dict(builds[0])), 1)
        self.assertRegex(dict(builds[0])["version"], r"^\d+\.\d+\.\d+")
        self.assertEqual(value(after, "cloudbrain_ready"), 1)
        self.assertGreater(value(after, "process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value(after, "process_open_fds"), 3)
        self.assertGreater(value(after, "process_cpu_seconds_total"), 0)
        started = value(after, "process_start_time_seconds")
        self.assertLess(abs(time.time() - started), 600, started)
        self.assertEqual(types["process_cpu_seconds_total"], "counter")
        self.assertEqual(types["cloudbrain_http_request_duration_seconds"], "histogram")

        # Every histogram: buckets cumulative, +Inf equal to _count.
        for name, kind in types.items():
            if kind != "histogram":
                continue
            series = {}
            for (sname, labels), v in after.items():
                if sname == name + "_bucket":
                    rest = frozenset(kv for kv in labels if kv[0] != "le")
                    le = dict(labels)["le"]
                    series.setdefault(rest, []).append((float(le), v))
            for rest, buckets in series.items():
                counts = [v for _, v in sorted(buckets)]
                self.assertEqual(counts, sorted(counts), f"{name} {rest}")
                self.assertEqual(sorted(buckets)[-1][0], float("inf"))
                self.assertEqual(counts[-1], after[(name + "_count", rest)], f"{name} {rest}")

        # Everything terminated: no instance is counted as live any more.
        def nothing_live():
            s, _ = parse(self.scrape())
            return value(s, "cloudbrain_jobs_queued", provider="gce") == 0 and all(
                value(s, "cloudbrain_instances", provider="gce", state=st) == 0
                for st in ("creating", "starting", "running", "terminating"))
        wait_until(nothing_live, 15, interval=0.5, what="no live instances or queued jobs counted")

    def test_reservations_by_state_and_past_their_end(self):
        r = self.service.request("POST", "/reservations", {"provider": "gce", "count": 2})
        self.assertEqual(r.status, 201, r)
        rid = r.json()["id"]
        wait_until(lambda: self.service.request("GET", f"/reservations/{rid}").json()["state"]
                   == "active", 30, what="reservation active")

        def gauges(active, past_end):
            def check():
                s, _ = parse(self.scrape())
                return (value(s, "cloudbrain_reservations", provider="gce", state="active")
                        == active and value(s, "cloudbrain_reservations_past_end",
                                            provider="gce") == past_end)
            return check
        wait_until(gauges(1, 0), 15, interval=0.5, what="one active reservation, none past end")
        # Its end passes (the janitor, every hour here, has not cancelled it yet).
        self.db.query(f"UPDATE reservations SET ends_at = now() - interval '1 minute' "
                      f"WHERE id = '{rid}'")
        wait_until(gauges(1, 1), 15, interval=0.5, what="one reservation past its end")
        self.assertEqual(self.service.request("DELETE", f"/reservations/{rid}").status, 202)
        wait_until(gauges(0, 0), 30, interval=0.5, what="the reservation no longer counted")

    def test_admin_listener_serves_operations_only(self):
        text = self.scrape(self.admin_port)
        self.promtool_check(text)
        samples, _ = parse(text)
        self.assertEqual(value(samples, "cloudbrain_ready"), 1)
        for path in ("/livez", "/readyz"):
            status, _, body = self.get_from(self.admin_port, path)
            self.assertEqual(status, 200, body)
        # The API is not served there, with or without a token.
        status, _, _ = self.get_from(self.admin_port, "/instances",
                                     {"Authorization": "token " + self.service.token})
        self.assertEqual(status, 404)
        # What the admin listener answered is counted like the rest (a response is counted once
        # it is written, so a scrape sees the ones before it).
        def counted():
            s, _ = parse(self.scrape(self.admin_port))
            return (self.http_count(s, "GET", "/metrics", 200) >= 1
                    and self.http_count(s, "GET", "/livez", 200) >= 1
                    and self.http_count(s, "GET", "/readyz", 200) >= 1
                    and self.http_count(s, "GET", "unmatched", 404) >= 1)
        wait_until(counted, 10, interval=0.2, what="the admin listener's responses counted")


if __name__ == "__main__":
    import unittest
    unittest.main()
