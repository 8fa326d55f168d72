"""`cloudbrain serve` configuration (INI file, CLOUDBRAIN_* environment, flags; errors exit 2
naming the key) and lifecycle (SIGTERM drains what is in flight, then exits 0)."""

import http.client
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import unittest
import uuid

from cloudbrain_test import Database, Service, free_port, run_serve, wait_until


def refuses(port):
    """Whether a new TCP connection to `port` is turned away (refused, or reset while still in
    the listen backlog of a socket being closed)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except (ConnectionRefusedError, ConnectionResetError):
        return True


class ConfigErrorTest(unittest.TestCase):
    """Each bad configuration stops `serve` with status 2 and a message naming the culprit."""

    @classmethod
    def setUpClass(cls):
        cls.db = Database()

    @classmethod
    def tearDownClass(cls):
        cls.db.drop()

    def serve(self, ini, env=None, args=()):
        d = tempfile.mkdtemp(prefix="cb-config-")
        self.addCleanup(shutil.rmtree, d, True)
        path = os.path.join(d, "cloudbrain.ini")
        with open(path, "w") as f:
            f.write(f"listen = 127.0.0.1:{free_port()}\ndatabase-url = {self.db.url}\n" + ini)
        return run_serve(["--config", path, *args], env=env, timeout=20)

    def assertRefused(self, ini, *named, env=None, args=()):
        code, out, err, took = self.serve(ini, env=env, args=args)
        self.assertIsNotNone(code, f"serve accepted this configuration and kept running:\n{ini}")
        self.assertEqual(code, 2, f"stderr: {err}")
        for word in named:
            self.assertIn(word, err, f"the message does not name '{word}'")
        self.assertNotIn("generated token", out)
        self.assertLess(took, 15)

    def test_unknown_key(self):
        self.assertRefused("frobnicate = 1\n", "frobnicate")
        self.assertRefused("reconcile_interval = 30s\n", "reconcile_interval")

    def test_unknown_section(self):
        self.assertRefused("[providers.gce]\ntype = fake\n", "providers.gce")

    def test_bad_durations(self):
        for key, value in (("reconcile-interval", "soon"), ("orphan-grace", "10 parsecs"),
                           ("shutdown-timeout", "-5s"), ("job-lease", ""),
                           ("token-cache-ttl", "5x")):
            with self.subTest(key=key, value=value):
                self.assertRefused(f"{key} = {value}\n", key, *((value,) if value else ()))

    def test_bad_numbers(self):
        for key, value in (("threads", "0"), ("db-pool-size", "many"),
                           ("max-connections", "-1"), ("log-level", "chatty")):
            with self.subTest(key=key, value=value):
                self.assertRefused(f"{key} = {value}\n", key, value)

    def test_provider_without_type(self):
        self.assertRefused("[provider.gce]\nzones = zone-a\n", "gce", "type")

    def test_unknown_provider_type(self):
        self.assertRefused("[provider.gce]\ntype = nimbus\n", "nimbus")

    def test_unknown_fake_key(self):
        self.assertRefused("[provider.gce]\ntype = fake\nflux-capacitor = on\n", "flux-capacitor")

    def test_bad_provider_values(self):
        for key, value in (("boot-delay", "fast"), ("failure-rate", "2"),
                           ("capacity-per-zone", "lots"), ("rate-limit", "0"),
                           ("max-in-flight", "none")):
            with self.subTest(key=key, value=value):
                self.assertRefused(f"[provider.gce]\ntype = fake\n{key} = {value}\n", key, value)

    def test_bad_listen(self):
        self.assertRefused("", "nowhere", env={"CLOUDBRAIN_LISTEN": "nowhere"})
        self.assertRefused("", "127.0.0.1:99999", args=("--listen", "127.0.0.1:99999"))

    def test_bad_environment_value(self):
        self.assertRefused("", "orphan-grace", "forever", env={"CLOUDBRAIN_ORPHAN_GRACE": "forever"})

    def test_unknown_flag(self):
        self.assertRefused("", "frobnicate", args=("--frobnicate", "1"))

    def test_missing_config_file(self):
        code, out, err, took = run_serve(["--config", "/nonexistent/cloudbrain.ini"], timeout=20)
        self.assertEqual(code, 2, err)
        self.assertIn("/nonexistent/cloudbrain.ini", err)


class PrecedenceTest(unittest.TestCase):
    """Flags override CLOUDBRAIN_* (and DATABASE_URL), which override the file."""

    @classmethod
    def setUpClass(cls):
        cls.db = Database()

    @classmethod
    def tearDownClass(cls):
        cls.db.drop()

    def start(self, listen_port, database=None, env=None, args=()):
        service = Service(database or self.db, env=env, args=list(args),
                          providers={"gce": {"type": "fake"}})
        file_port = service.port
        if listen_port is not None:
            service.port = listen_port  # where it must listen; start() waits on this port
        service.start()
        self.addCleanup(lambda: self.assertEqual(service.stop(), 0, service.log_tail()))
        return service, file_port

    def test_file_only(self):
        service, file_port = self.start(None)
        self.assertEqual(service.port, file_port)
        self.assertEqual(service.request("GET", "/livez", auth=False).status, 200)

    def test_environment_overrides_file(self):
        env_port = free_port()
        service, file_port = self.start(env_port,
                                        env={"CLOUDBRAIN_LISTEN": f"127.0.0.1:{env_port}"})
        self.assertNotEqual(file_port, env_port)
        self.assertTrue(refuses(file_port), "it also listens on the file's port")

    def test_flag_overrides_environment_and_file(self):
        env_port, flag_port = free_port(), free_port()
        service, file_port = self.start(flag_port,
                                        env={"CLOUDBRAIN_LISTEN": f"127.0.0.1:{env_port}"},
                                        args=("--listen", f"127.0.0.1:{flag_port}"))
        self.assertTrue(refuses(file_port), "it listens on the file's port")
        self.assertTrue(refuses(env_port), "it listens on the environment's port")
        self.assertEqual(service.request("GET", "/readyz", auth=False).status, 200)

    def test_database_url_precedence(self):
        nowhere = Database.attach(f"postgresql://cloudbrain@127.0.0.1:{free_port()}/nowhere")
        # File: nowhere; DATABASE_URL: the real one.
        self.start(None, database=nowhere, env={"DATABASE_URL": self.db.url})
        # File: nowhere; CLOUDBRAIN_DATABASE_URL nowhere; flag: the real one.
        port = free_port()
        self.start(port, database=nowhere,
                   env={"CLOUDBRAIN_DATABASE_URL": nowhere.url, "DATABASE_URL": nowhere.url},
                   args=("--database-url", self.db.url, "--listen", f"127.0.0.1:{port}"))


class ShutdownTest(unittest.TestCase):
    """SIGTERM: the request in flight completes, no new connection is accepted, exit 0."""

    def setUp(self):
        self.db = Database()
        self.addCleanup(self.db.drop)

    def test_sigterm_drains(self):
        service = Service(self.db, providers={
            "gce": {"type": "fake", "zones": "zone-a", "api-latency": "2s",
                    "boot-delay": "50ms"}})
        service.start()
        self.addCleanup(service.stop, signal.SIGKILL)
        token = service.token
        # Creates whose cloud calls are under way (each call takes 2 s at the fake).
        ids = []
        for _ in range(3):
            r = service.request("POST", "/instances", {"provider": "gce", "image": "slow"})
            self.assertEqual(r.status, 201, r)
            ids.append(r.json()["id"])
        wait_until(lambda: int(self.db.query(
            "SELECT count(*) FROM jobs WHERE state = 'running'")) == 3, 10,
            what="the create jobs to be claimed")

        # An HTTP request in flight: its header and half of its body are sent.
        body = b'{"provider": "gce", "image": "in-flight-' + uuid.uuid4().hex.encode() + b'"}'
        sock = socket.create_connection(("127.0.0.1", service.port), timeout=30)
        self.addCleanup(sock.close)
        sock.sendall(b"POST /instances HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Authorization: token " + token.encode() + b"\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:10])
        time.sleep(0.5)

        service.proc.send_signal(signal.SIGTERM)
        term_at = time.monotonic()
        wait_until(lambda: refuses(service.port), 3, interval=0.05,
                   what="new connections to be refused after SIGTERM")
        for _ in range(3):
            self.assertTrue(refuses(service.port), "a new connection was accepted after SIGTERM")
            self.assertIsNone(service.proc.poll(), "exited with a request in flight")
            time.sleep(0.2)

        sock.sendall(body[10:])
        data = b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            if _ and b"content-length:" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(rest) >= length:
                    break
        head, _, rest = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 201 "), f"in-flight request got: {data[:500]!r}")
        inst = json.loads(rest)
        self.assertEqual(inst["state"], "creating")
        ids.append(inst["id"])

        code = service.proc.wait(timeout=40)
        took = time.monotonic() - term_at
        self.assertEqual(code, 0, service.log_tail())
        print(f"\nexited {code} {took:.1f}s after SIGTERM", flush=True)
        # Nothing is left leased to the dead process: each create either finished or was given
        # back to the queue.
        leftover = self.db.query("SELECT count(*) FROM jobs WHERE state = 'running'")
        self.assertEqual(leftover, "0", "jobs still leased by the stopped process")

        # A new process picks everything up.
        again = Service(self.db, providers={"gce": {"type": "fake", "zones": "zone-a",
                                                    "boot-delay": "50ms"}})
        again.start()
        try:
            for i in ids:
                def running(i=i):
                    r = again.request("GET", f"/instances/{i}", token=token)
                    return r.status == 200 and r.json()["state"] == "running"
                wait_until(running, 60, interval=0.2, what=f"{i} to run after the restart")
        finally:
            self.assertEqual(again.stop(), 0, again.log_tail())

    def test_sigterm_when_idle_exits_quickly(self):
        service = Service(self.db, providers={"gce": {"type": "fake"}})
        service.start()
        self.addCleanup(service.stop, signal.SIGKILL)
        # An idle kept-alive connection does not hold the shutdown up.
        conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("GET", "/livez")
        resp = conn.getresponse()
        resp.read()
        self.assertEqual(resp.status, 200)
        t0 = time.monotonic()
        service.proc.send_signal(signal.SIGTERM)
        code = service.proc.wait(timeout=30)
        self.assertEqual(code, 0, service.log_tail())
        self.assertLess(time.monotonic() - t0, 10, "an idle connection held the shutdown up")


if __name__ == "__main__":
    unittest.main()
