"""PostgreSQL goes away under a running service and comes back: /readyz says so, writes get 503
with Retry-After (never 500, never a hang), /livez stays 200, the process survives and recovers by
itself. And `serve` refuses to start against a database without the schema, with a schema that is
too old, or against no database at all."""

import json
import os
import signal
import subprocess
import threading
import time
import unittest

from cloudbrain_test import PG_SH, Database, PgCluster, Service, free_port, run_serve, wait_until

CLIENT_TIMEOUT = 15


class DatabaseOutageTest(unittest.TestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "2s",
                         "rate-limit": "2000", "max-in-flight": "100"}}

    @classmethod
    def setUpClass(cls):
        cls.cluster = PgCluster().start()
        try:
            cls.cluster.deploy_schema()
            cls.db = Database.attach(cls.cluster.url())
            cls.service = Service(cls.db, providers=cls.providers)
            cls.service.start()
        except Exception:
            cls.cluster.destroy()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            code = cls.service.stop()
        finally:
            cls.cluster.destroy()
        if code not in (0, None):
            raise AssertionError(f"cloudbrain exited with {code} on SIGTERM:\n"
                                 f"{cls.service.log_tail()}")

    def req(self, method, path, body=None, auth=True, timeout=CLIENT_TIMEOUT):
        return self.service.request(method, path, body, auth=auth, timeout=timeout)

    def post(self, tag):
        return self.req("POST", "/instances", {"provider": "gce", "image": "image-2016-01-01",
                                               "tags": {"phase": tag}})

    def state_of(self, instance_id):
        r = self.req("GET", f"/instances/{instance_id}")
        return r.json()["state"] if r.status == 200 else None

    def assertAlive(self):
        self.assertIsNone(self.service.proc.poll(),
                          f"cloudbrain died:\n{self.service.log_tail()}")

    def assertUnavailable(self, r):
        """503, problem+json, Retry-After."""
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.header("Content-Type"), "application/problem+json", r)
        p = r.json()
        for key in ("type", "title", "status", "detail", "code", "errors"):
            self.assertIn(key, p)
        self.assertEqual(p["status"], 503)
        retry = r.header("Retry-After")
        self.assertIsNotNone(retry, f"503 without Retry-After: {r}")
        self.assertTrue(retry.isdigit() and 0 < int(retry) <= 300, retry)

    def test_outage_and_recovery(self):
        token = self.service.token
        unused_token = self.service.create_token("first used during the outage")
        baseline = self.post("before")
        self.assertEqual(baseline.status, 201, baseline)
        baseline_id = baseline.json()["id"]
        wait_until(lambda: self.state_of(baseline_id) == "running", 30, interval=0.2,
                   what="the baseline instance to run")

        # Light load all along: GETs and POSTs, each bounded by the client timeout.
        records = []
        stop = threading.Event()

        def load():
            deadline = time.monotonic() + 240
            n = 0
            while not stop.is_set() and time.monotonic() < deadline:
                n += 1
                method, path, body = (("GET", f"/instances/{baseline_id}", None) if n % 2
                                      else ("POST", "/instances",
                                            {"provider": "gce", "image": "load",
                                             "tags": {"phase": "load"}}))
                t0 = time.monotonic()
                try:
                    r = self.service.request(method, path, body, token=token,
                                             timeout=CLIENT_TIMEOUT)
                    records.append((method, r.status, time.monotonic() - t0, None, r))
                except Exception as e:  # a timeout or a dropped connection is a finding
                    records.append((method, None, time.monotonic() - t0, repr(e), None))
                stop.wait(0.1)
        loader = threading.Thread(target=load, daemon=True)
        loader.start()
        self.addCleanup(stop.set)
        time.sleep(1)

        # Instances whose creation is under way when the database goes.
        in_flight = []
        for _ in range(5):
            r = self.post("in-flight")
            self.assertEqual(r.status, 201, r)
            in_flight.append(r.json()["id"])

        self.cluster.stop("fast")
        down_at = time.monotonic()

        def not_ready():
            r = self.req("GET", "/readyz", auth=False, timeout=5)
            return r if r.status == 503 else None
        r = wait_until(not_ready, 10, interval=0.2, what="/readyz to turn 503")
        print(f"\n/readyz 503 after {time.monotonic() - down_at:.1f}s: {r.body}", flush=True)
        doc = r.json()
        self.assertTrue(doc.get("reasons"), f"/readyz 503 gives no reason: {doc}")
        self.assertIn("database", json.dumps(doc["reasons"]).lower())

        for _ in range(3):
            t0 = time.monotonic()
            r = self.post("during")
            self.assertUnavailable(r)
            self.assertLess(time.monotonic() - t0, CLIENT_TIMEOUT)
            r = self.req("GET", f"/instances/{baseline_id}")
            self.assertUnavailable(r)
            r = self.req("DELETE", f"/instances/{in_flight[0]}")
            self.assertUnavailable(r)
            self.assertEqual(self.req("GET", "/livez", auth=False).status, 200)
            self.assertAlive()
            time.sleep(1)
        # A token the service has not seen yet cannot be checked without the database: 503,
        # not 401 (the token is fine) and not 500.
        r = self.service.request("GET", "/instances", token=unused_token, timeout=CLIENT_TIMEOUT)
        self.assertUnavailable(r)
        # No token at all is still a plain 401.
        r = self.req("GET", "/instances", auth=False)
        self.assertEqual(r.status, 401, r)

        self.cluster.start()
        up_at = time.monotonic()

        def ready():
            r = self.req("GET", "/readyz", auth=False, timeout=5)
            return r.status == 200
        wait_until(ready, 30, interval=0.2, what="/readyz to recover by itself")
        print(f"/readyz 200 again {time.monotonic() - up_at:.1f}s after the restart", flush=True)

        def created():
            r = self.post("after")
            return r if r.status == 201 else None
        after = wait_until(created, 30, interval=0.5, what="POST to succeed after the outage")
        self.assertAlive()

        # Everything created before and after the outage ends up running.
        ids = in_flight + [after.json()["id"]]
        wait_until(lambda: all(self.state_of(i) == "running" for i in ids), 90, interval=1,
                   what="instances from before and after the outage to run")
        print(f"all running {time.monotonic() - up_at:.1f}s after the restart", flush=True)
        # The load's own POSTs too, once accepted.
        stop.set()
        loader.join(timeout=CLIENT_TIMEOUT + 5)
        self.assertFalse(loader.is_alive())
        accepted = [rec[4].json()["id"] for rec in records if rec[1] == 201]
        wait_until(lambda: all(self.state_of(i) == "running" for i in accepted), 60, interval=1,
                   what="the load's instances to run")

        statuses = sorted({str(rec[1]) for rec in records})
        print(f"load: {len(records)} requests, statuses {statuses}", flush=True)
        failures = [rec[:4] for rec in records if rec[1] not in (200, 201, 503)]
        self.assertEqual(failures, [], "requests failed otherwise than with 503")
        for rec in records:
            if rec[1] == 503:
                self.assertUnavailable(rec[4])
        self.assertTrue(any(rec[1] == 503 for rec in records), "the load never saw the outage")
        self.assertTrue(any(rec[1] in (200, 201) for rec in records))
        self.assertAlive()
        log = "\n".join(self.service.log_lines())
        self.assertNotIn("AddressSanitizer", log)

    def test_serve_waits_for_a_database_that_comes_up(self):
        # PostgreSQL is down when `serve` starts and comes up a few seconds later.
        self.cluster.stop("fast")
        self.addCleanup(lambda: self.cluster.start() if not self.cluster_up() else None)
        late = Service(self.db, providers=self.providers)
        late.start(wait=False)
        self.addCleanup(lambda: late.stop(signal.SIGKILL) if late.proc.poll() is None else None)
        time.sleep(4)
        self.assertIsNone(late.proc.poll(), f"gave up at once:\n{late.log_tail()}")
        self.cluster.start()
        wait_until(late.ready, 40, interval=0.2, what="the late service to become ready")
        r = late.request("POST", "/instances", {"provider": "gce", "image": "late"},
                         token=self.service.token)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(late.stop(), 0, late.log_tail())

    def test_sigterm_while_the_database_is_down(self):
        # Jobs in flight, then the database goes, then SIGTERM: exit 0 within shutdown-timeout.
        node = Service(self.db, settings={"shutdown-timeout": "5s"},
                       providers={"gce": {"type": "fake", "zones": "zone-a",
                                          "api-latency": "1s"}})
        node.start()
        self.addCleanup(lambda: node.stop(signal.SIGKILL) if node.proc.poll() is None else None)
        for _ in range(3):
            r = node.request("POST", "/instances", {"provider": "gce", "image": "stopping"},
                             token=self.service.token)
            self.assertEqual(r.status, 201, r)
        time.sleep(0.5)
        self.cluster.stop("fast")
        self.addCleanup(lambda: self.cluster.start() if not self.cluster_up() else None)
        time.sleep(1)
        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        code = node.proc.wait(timeout=30)
        self.assertEqual(code, 0, node.log_tail())
        self.assertLess(time.monotonic() - t0, 5 + 5, "shutdown-timeout was not kept")

    def cluster_up(self):
        try:
            self.db.query("SELECT 1")
            return True
        except Exception:
            return False


class StartupRefusalTest(unittest.TestCase):
    """`serve` against a database it cannot use exits non-zero with a clear message."""

    def serve_against(self, db, timeout=60):
        service = Service(db)  # only for its configuration file
        return run_serve(["--config", service.config_path], timeout=timeout)

    def test_database_without_schema(self):
        db = Database(empty=True)
        self.addCleanup(db.drop)
        code, out, err, took = self.serve_against(db)
        self.assertIsNotNone(code, "serve kept running against a database without the schema")
        self.assertNotEqual(code, 0, err)
        self.assertLess(took, 40)
        self.assertRegex(err.lower(), r"schema|sqitch", err)
        self.assertNotIn("listening", (out + err).lower())

    def test_schema_too_old(self):
        with open(os.path.join(os.path.dirname(PG_SH), "..", "..", "schema", "sqitch.plan")) as f:
            changes = [line.split()[0] for line in f
                       if line.strip() and not line.startswith(("%", "#", "@"))]
        self.assertGreaterEqual(len(changes), 2)
        db = Database(empty=True)
        self.addCleanup(db.drop)
        out = subprocess.run(
            ["bash", "-c", f'source "{PG_SH}"; _cb_sqitch deploy --to "$1" --target "$2"',
             "deploy", changes[-2], "db:pg:" + db.url.split(":", 1)[1]],
            capture_output=True, text=True, timeout=300)
        self.assertEqual(out.returncode, 0, out.stderr)
        code, out_, err, took = self.serve_against(db)
        self.assertIsNotNone(code, "serve kept running against an old schema")
        self.assertNotEqual(code, 0, err)
        self.assertRegex(err.lower(), r"schema|sqitch", err)

    def test_unreachable_database(self):
        db = Database.attach(f"postgresql://cloudbrain@127.0.0.1:{free_port()}/cloudbrain")
        code, out, err, took = self.serve_against(db, timeout=90)
        self.assertIsNotNone(code, "serve kept running without a database for 90 s")
        self.assertNotEqual(code, 0, err)
        self.assertLess(took, 45, f"took {took:.0f}s to give up")
        self.assertIn("database", err.lower(), err)
        self.assertRegex(err.lower(), r"reach|connect|unavailable|refused", err)


if __name__ == "__main__":
    unittest.main()
