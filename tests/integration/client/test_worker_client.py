"""Cloud Brain's own client against cloudbrain: travis-ci/worker's cloudbrain backend, replayed
with Go's net/http (worker_replay.go, built here with Debian's Go), through a tap that records
the bytes it really sends. Against the fake provider and against the GCE emulator: create (201,
decoded into the backend's struct) → the boot poll ends running with an address → Stop (a GET)
→ the abandoned-start Delete (the backend expects 200, the contract answers 202) → terminated.
Also a lost answer to the create, retried by the backend's backoff; the original README's
httpie usage from ~/.netrc; and curl without a JSON Content-Type.

Needs `go` (golang-go); tests/run-all.sh provides the binary and the database template.
"""
import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import unittest

import gce_service
from cloudbrain_test import ServiceTestCase, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
REPLAY = None
BUILD_DIR = None


def setUpModule():
    """Builds the replay once, offline: no module, no proxy, a cache of its own."""
    global REPLAY, BUILD_DIR
    BUILD_DIR = tempfile.mkdtemp(prefix="cb-worker-replay-")
    env = dict(os.environ, GO111MODULE="off", GOPROXY="off", GOFLAGS="",
               GOCACHE=os.path.join(BUILD_DIR, "cache"), GOPATH=os.path.join(BUILD_DIR, "gopath"),
               HOME=BUILD_DIR)
    REPLAY = os.path.join(BUILD_DIR, "worker_replay")
    out = subprocess.run(["go", "build", "-o", REPLAY, os.path.join(HERE, "worker_replay.go")],
                         capture_output=True, text=True, env=env, timeout=300)
    if out.returncode != 0:
        raise AssertionError("go build worker_replay.go failed:\n" + out.stderr)


def tearDownModule():
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


class Tap:
    """A TCP relay in front of the service that parses every HTTP/1.1 request the client sends
    (head and Content-Length body) and can lose the answer to chosen requests: the request
    reaches the service, the client's connection is closed before the answer is relayed."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.requests = []  # (method, target, [(name, value)], body)
        self.lose_answers = []  # methods whose next answer is lost, in order
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.closed = True
        self.sock.close()

    def _accept(self):
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            state = {"lose_next": False}
            threading.Thread(target=self._client_side, args=(client, upstream, state),
                             daemon=True).start()
            threading.Thread(target=self._upstream_side, args=(upstream, client, state),
                             daemon=True).start()

    def _client_side(self, client, upstream, state):
        buf = b""
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                buf += data
                while True:
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    head = buf[:end].decode("latin-1").split("\r\n")
                    headers = [tuple(part.strip() for part in line.split(":", 1))
                               for line in head[1:]]
                    length = sum(int(v) for k, v in headers if k.lower() == "content-length")
                    if len(buf) < end + 4 + length:
                        break
                    body = buf[end + 4:end + 4 + length]
                    raw = buf[:end + 4 + length]
                    buf = buf[end + 4 + length:]
                    method, target, _ = head[0].split(" ", 2)
                    with self.lock:
                        self.requests.append((method, target, headers, body))
                        if self.lose_answers and self.lose_answers[0] == method:
                            self.lose_answers.pop(0)
                            state["lose_next"] = True
                    upstream.sendall(raw)
        except OSError:
            pass
        finally:
            for s in (client, upstream):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _upstream_side(self, upstream, client, state):
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                if state["lose_next"]:
                    # The service did the work; its answer never reaches the client.
                    break
                client.sendall(data)
        except OSError:
            pass
        finally:
            # shutdown, not only close: the other thread's recv on these sockets must end, and
            # the client must see the connection go.
            for s in (client, upstream):
                for end in (lambda: s.shutdown(socket.SHUT_RDWR), s.close):
                    try:
                        end()
                    except OSError:
                        pass

    def seen(self, method=None):
        with self.lock:
            return [r for r in self.requests if method is None or r[0] == method]


def header(headers, name):
    values = [v for k, v in headers if k.lower() == name.lower()]
    return values[0] if len(values) == 1 else values or None


class WorkerReplay:
    """Runs the replay through a tap and returns its steps by name."""

    def __init__(self, case, vm_type="default"):
        self.case = case
        self.tap = Tap(case.service.port)
        case.addCleanup(self.tap.close)
        self.provider, self.vm_type, self.image = case.provider_name, vm_type, case.image

    def run(self, *extra, timeout=240):
        endpoint = "http://token:%s@127.0.0.1:%d/" % (self.case.service.token, self.tap.port)
        out = subprocess.run([REPLAY, "-endpoint", endpoint, "-provider", self.provider,
                              "-image", self.image, "-vm-type", self.vm_type, "-pre-poll", "200ms",
                              "-poll", "250ms", "-timeout", "90s", *extra],
                             capture_output=True, text=True, timeout=timeout,
                             env=dict(os.environ, NO_PROXY="*", no_proxy="*"))
        self.case.assertEqual(out.returncode, 0, out.stderr)
        steps = [json.loads(line) for line in out.stdout.splitlines()]
        return {s["step"]: s for s in steps}


class WorkerClientCase:
    """The scenarios, run against each kind of provider below."""

    provider_name = "gce"
    image = "image-2016-01-01"

    def vm_at_cloud(self, instance):
        """The VM behind `instance` as the cloud reports it, or None; overridden per cloud."""
        return None

    def assert_go_request(self, request, method, body_fields=None):
        got_method, target, headers, body = request
        self.assertEqual(got_method, method)
        self.assertEqual(header(headers, "User-Agent"), "Go-http-client/1.1")
        self.assertEqual(header(headers, "Accept-Encoding"), "gzip")
        self.assertIsNone(header(headers, "Content-Type"), "Go's client sends no Content-Type")
        self.assertEqual(header(headers, "Authorization"),
                         "Basic " + base64.b64encode(
                             ("token:" + self.service.token).encode()).decode())
        if body_fields is not None:
            self.assertEqual(json.loads(body), body_fields)
            self.assertEqual(int(header(headers, "Content-Length")), len(body))
        return target

    def test_start_poll_stop_and_delete(self):
        replay = WorkerReplay(self)
        steps = replay.run()

        created = steps["create"]
        self.assertNotIn("error", created, created)
        self.assertEqual(created["attempts"], 1)
        inst = created["instance"]
        self.assertEqual((inst["provider"], inst["image"], inst["state"]),
                         (self.provider_name, self.image, "creating"))
        self.assertRegex(inst["id"], r"^[0-9a-f-]{36}$")
        posts = replay.tap.seen("POST")
        self.assertEqual(len(posts), 1)
        target = self.assert_go_request(
            posts[0], "POST", {"provider": self.provider_name, "image": self.image,
                               "instance_type": "default", "public_ssh_key": ""})
        self.assertEqual(target, "/instances")

        booted = steps["boot"]
        self.assertNotIn("error", booted, booted)
        self.assertEqual(booted["instance"]["state"], "running")
        self.assertRegex(booted["instance"]["ip_address"], r"^\d+\.\d+\.\d+\.\d+$")
        self.assertTrue(booted["instance"]["upstream_id"])
        self.assertGreaterEqual(booted["polls"], 1)

        self.assertNotIn("error", steps["stop"])
        self.assertEqual(steps["stop"]["instance"]["state"], "running")

        # The backend expects 200 from DELETE; the contract answers 202 Accepted (the VM goes
        # away afterwards). The backend ignores this error on its abandoned-start path.
        self.assertIn("expected 200 response code, got status=202", steps["delete"]["error"])
        self.assertRegex(steps["delete"]["error"], r'"state"\s*:\s*"terminating"')
        self.assertNotIn("error", steps["terminated"], steps["terminated"])
        self.assertEqual(steps["terminated"]["instance"]["state"], "terminated")

        for request in replay.tap.seen():
            target = self.assert_go_request(request, request[0])
            self.assertEqual(target, "/instances" if request[0] == "POST"
                             else "/instances/" + inst["id"])
        self.assertEqual({r[0] for r in replay.tap.seen()}, {"POST", "GET", "DELETE"})
        stored = self.service.request("GET", "/instances/" + inst["id"]).json()
        self.assertEqual((stored["instance_type"], stored["public_ssh_key"]), ("standard", None))
        self.assertIsNone(self.vm_at_cloud(inst))

    def test_premium_vm_type(self):
        replay = WorkerReplay(self, vm_type="premium")
        steps = replay.run("-create-only")
        self.assertNotIn("error", steps["create"])
        stored = self.service.request("GET", "/instances/" + steps["create"]["instance"]["id"])
        self.assertEqual(stored.json()["instance_type"], "premium")

    def list_instances(self):
        r = self.service.request("GET", "/instances?provider=%s&limit=1000" % self.provider_name)
        self.assertEqual(r.status, 200, r)
        return r.json()["instances"]


class FakeProvider(WorkerClientCase, ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "100ms"}}

    def test_lost_answer_to_the_create(self):
        # The answer to the first POST is lost after the service stored the instance. The
        # backend's backoff sends the same *http.Request again, whose bytes.Reader body was
        # already read: Go refuses to send it, every retry fails the same way without reaching
        # the network, and after a minute (shortened here) the backend gives up. The instance of
        # the lost answer exists; the worker never learns its id. (The client's side alone: the
        # provider does not matter, so it runs against the fake one only.)
        replay = WorkerReplay(self)
        replay.tap.lose_answers.append("POST")
        before = {i["id"] for i in self.list_instances()}
        steps = replay.run("-create-only", "-max-elapsed", "6s", timeout=120)
        err = steps["create"]["error"]
        self.assertIn("ContentLength=", err)
        self.assertIn("Body length 0", err)
        self.assertGreater(steps["create"]["attempts"], 3)
        self.assertEqual(len(replay.tap.seen("POST")), 1, "no retry reached the network")
        made = [i for i in self.list_instances() if i["id"] not in before]
        self.assertEqual(len(made), 1, made)
        self.service.request("DELETE", "/instances/" + made[0]["id"])
        self.wait_state(made[0]["id"], "terminated", timeout=60)


class GceEmulator(WorkerClientCase, gce_service.GceCase):
    """The same backend against a gce provider whose cloud is the GCE emulator."""

    provider_name = "gce-staging"
    image = "family/debian-12"

    @classmethod
    def setUpClass(cls):
        gce_service.start_emulator()
        cls.addClassCleanup(gce_service.stop_emulator)
        cls.key_file, _ = gce_service.make_key_file(gce_service.SA_EMAIL)
        super().setUpClass()

    @classmethod
    def service_providers(cls):
        # The worker names images as the provider does: a family of the image project.
        return {"gce-staging": gce_service.gce_section(credentials=cls.key_file)}

    def vm_at_cloud(self, instance):
        return gce_service.emu_vm(instance["id"])


class OriginalReadmeClients(ServiceTestCase):
    """How the original README and a shell user call the API: httpie with ~/.netrc, curl."""

    providers = {"gce": {"type": "fake", "zones": "zone-a", "boot-delay": "20ms"}}

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="cb-readme-home-")
        self.addCleanup(shutil.rmtree, self.home, True)
        with open(os.path.join(self.home, ".netrc"), "w") as f:
            f.write("machine 127.0.0.1\n  login token\n  password %s\n" % self.service.token)
        os.chmod(os.path.join(self.home, ".netrc"), 0o600)
        config_dir = os.path.join(self.home, "httpie")
        os.mkdir(config_dir)
        with open(os.path.join(config_dir, "config.json"), "w") as f:
            json.dump({"disable_update_warnings": True}, f)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("HTTP", "http_", "https_", "NETRC", "REQUESTS_"))}
        self.env.update({"HOME": self.home, "HTTPIE_CONFIG_DIR": config_dir,
                         "NO_PROXY": "*", "no_proxy": "*"})

    def run_tool(self, *argv):
        out = subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=60,
                             stdin=subprocess.DEVNULL)
        self.assertEqual(out.returncode, 0, out.stderr)
        return out.stdout

    def test_httpie_from_netrc(self):
        # The original README's script: `http post instances provider=... image=...
        # instance_type=standard`, then get and delete, the token from ~/.netrc.
        base = "127.0.0.1:%d" % self.service.port
        created = json.loads(self.run_tool("http", "--ignore-stdin", "--body", "post",
                                           base + "/instances", "provider=gce",
                                           "image=travis-ci-amethyst-trusty-1470801111",
                                           "instance_type=standard"))
        self.assertEqual(created["state"], "creating")
        self.wait_state(created["id"], "running")
        got = json.loads(self.run_tool("http", "--ignore-stdin", "--body", "get",
                                       base + "/instances/" + created["id"]))
        self.assertEqual(got["state"], "running")
        self.assertTrue(got["ip_address"])
        status = self.run_tool("http", "--ignore-stdin", "--headers", "delete",
                               base + "/instances/" + created["id"])
        self.assertIn("202 Accepted", status)
        self.wait_state(created["id"], "terminated")

    def curl(self, *args):
        out = self.run_tool("curl", "-sS", "-o", "-", "-w", "\n%{http_code}", *args)
        body, _, code = out.rpartition("\n")
        return int(code), body

    def test_curl_without_content_type(self):
        url = self.service.url("/instances")
        auth = "Authorization: token " + self.service.token
        body = '{"provider":"gce","image":"image-2016-01-01"}'
        # curl --json sets the JSON type itself; curl --data-binary with the type header
        # removed sends none, like Go.
        for flags in (["--json", body], ["--data-binary", body, "-H", "Content-Type:"]):
            with self.subTest(flags=flags[0]):
                code, text = self.curl("-H", auth, *flags, url)
                self.assertEqual(code, 201, text)
                self.assertEqual(json.loads(text)["state"], "creating")
        # Plain `curl -d` declares a form (application/x-www-form-urlencoded): 415, and the
        # problem says what to send instead.
        code, text = self.curl("-H", auth, "-d", body, url)
        self.assertEqual(code, 415, text)
        problem = json.loads(text)
        self.assertEqual(problem["code"], "unsupported_media_type")
        self.assertIn("application/x-www-form-urlencoded", problem["detail"])
        self.assertIn("Content-Type: application/json (or none)", problem["detail"])


if __name__ == "__main__":
    unittest.main()
