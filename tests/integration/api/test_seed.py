"""The original Cloud Brain README's own examples, verbatim, against the real service: the
create/get/delete cycle with `Authorization: token ...`, the same through httpie with a ~/.netrc
entry (HTTP Basic, user `token`), and the token tools (`cloudbrain-create-token`,
`cloudbrain token list`, `cloudbrain token revoke`)."""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from cloudbrain_test import Service, ServiceTestCase, wait_until

INSTANCE_FIELDS = ("id", "provider", "image", "instance_type", "public_ssh_key", "zone",
                   "reservation_id", "tags", "ip_address", "upstream_id", "state", "error_reason",
                   "created_at", "updated_at")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
RFC3339_UTC_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
TEST_NET = ipaddress.ip_network("203.0.113.0/24")
TOKEN_LINE_RE = re.compile(r"^generated token: (([0-9]+)-[0-9a-f]{32})\n$")
HTTPIE = "/usr/bin/http"

# The README's example request body, byte for byte what its JSON says.
SEED_BODY = {
    "provider": "gce",
    "image": "image-2016-01-01",
    "instance_type": "standard",
    "public_ssh_key": "ssh-rsa …",
}


class SeedExampleTest(ServiceTestCase):
    # The README's provider name, backed by the fake cloud.
    providers = {"gce": {"type": "fake"}}

    def assertInstance(self, inst):
        for field in INSTANCE_FIELDS:
            self.assertIn(field, inst, f"instance lacks '{field}': {inst}")
        self.assertRegex(inst["id"], UUID_RE)
        self.assertRegex(inst["created_at"], RFC3339_UTC_RE)
        self.assertRegex(inst["updated_at"], RFC3339_UTC_RE)
        self.assertIsInstance(inst["tags"], dict)

    def test_readme_example_create_get_delete(self):
        r = self.service.request("POST", "/instances", SEED_BODY)
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.header("Content-Type").startswith("application/json"), r.headers)
        inst = r.json()
        self.assertInstance(inst)
        location = r.header("Location")
        self.assertIsNotNone(location, "no Location header")
        self.assertTrue(location.endswith("/instances/" + inst["id"]), location)
        self.assertEqual(inst["state"], "creating")
        self.assertEqual(inst["provider"], "gce")
        self.assertEqual(inst["image"], "image-2016-01-01")
        self.assertEqual(inst["instance_type"], "standard")
        self.assertEqual(inst["public_ssh_key"], "ssh-rsa …")
        self.assertIsNone(inst["ip_address"])
        self.assertIsNone(inst["error_reason"])
        self.assertEqual(inst["tags"], {})

        # The Location header leads to the same instance.
        path = "/" + location.split("://", 1)[-1].split("/", 1)[1]
        self.assertEqual(path, "/instances/" + inst["id"])

        running = self.wait_state(inst["id"], "running", timeout=20)
        self.assertInstance(running)
        self.assertEqual(running["id"], inst["id"])
        self.assertIsNotNone(running["ip_address"])
        self.assertIn(ipaddress.ip_address(running["ip_address"]), TEST_NET)
        self.assertIsNotNone(running["upstream_id"])
        self.assertIsNotNone(running["zone"])
        self.assertEqual(running["public_ssh_key"], "ssh-rsa …")
        self.assertEqual(running["created_at"], inst["created_at"])
        self.assertGreaterEqual(running["updated_at"], inst["updated_at"])

        r = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual(r.status, 202, r)
        deleting = r.json()
        self.assertInstance(deleting)
        self.assertEqual(deleting["id"], inst["id"])
        self.assertEqual(deleting["state"], "terminating")

        terminated = self.wait_state(inst["id"], "terminated", timeout=20)
        self.assertInstance(terminated)

        # Deleting again: 202, nothing changes.
        r = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json(), terminated)
        time.sleep(0.5)
        r = self.service.request("GET", f"/instances/{inst['id']}")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json(), terminated)

    def test_delete_twice_while_terminating_changes_nothing(self):
        inst = self.create(**{k: v for k, v in SEED_BODY.items() if k != "provider"})
        self.wait_state(inst["id"], "running", timeout=20)
        first = self.service.request("DELETE", f"/instances/{inst['id']}")
        second = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual(first.status, 202, first)
        self.assertEqual(second.status, 202, second)
        self.assertIn(second.json()["state"], ("terminating", "terminated"))
        self.wait_state(inst["id"], "terminated", timeout=20)
        jobs = self.db.query(
            f"SELECT count(*) FROM jobs WHERE instance_id = '{inst['id']}' "
            "AND kind = 'delete_instance'")
        self.assertEqual(jobs, "1", "a second DELETE queued another delete job")


class ErroredStateTest(ServiceTestCase):
    """`errored` with `error_reason` when the cloud refuses for good; such an instance can still
    be deleted."""

    providers = {"gce": {"type": "fake"},
                 "broken": {"type": "fake", "zones": "zone-a", "failure-rate": "1.0"}}
    settings = {"job-max-attempts": "2"}

    def test_errored_then_deleted(self):
        inst = self.create(provider="broken")
        errored = self.wait_state(inst["id"], "errored", timeout=60)
        self.assertTrue(errored["error_reason"], errored)
        self.assertIsNone(errored["ip_address"])
        r = self.service.request("DELETE", f"/instances/{inst['id']}")
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json()["state"], "terminating")
        self.wait_state(inst["id"], "terminated", timeout=30)


class HttpieTest(ServiceTestCase):
    """The README's script uses httpie with the token in ~/.netrc (`login token`)."""

    providers = {"gce": {"type": "fake"}}

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="cb-httpie-home-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.assertTrue(os.access(HTTPIE, os.X_OK), f"{HTTPIE} (Debian's httpie) is not installed")

    def write_netrc(self, login, password):
        path = os.path.join(self.home, ".netrc")
        with open(path, "w") as f:
            f.write(f"machine 127.0.0.1\n  login {login}\n  password {password}\n")
        os.chmod(path, 0o600)

    def http(self, *args):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("HTTP", "http_", "https_", "NETRC", "REQUESTS_"))}
        env["HOME"] = self.home
        env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1"
        return subprocess.run(
            [HTTPIE, "--check-status", "--ignore-stdin", "--timeout", "30", *args],
            capture_output=True, text=True, env=env, timeout=60)

    def test_httpie_with_netrc(self):
        token = self.service.create_token("httpie")
        base = f"127.0.0.1:{self.service.port}"

        # Without a netrc the request is refused (httpie exits 4 on a 4xx with --check-status),
        # so a success below is owed to the netrc entry alone.
        out = self.http("POST", f"{base}/instances", "provider=gce", "image=image-2016-01-01",
                        "instance_type=standard")
        self.assertEqual(out.returncode, 4, out)
        self.assertEqual(json.loads(out.stdout)["code"], "invalid_token", out.stdout)

        # A netrc with the right password but another login is refused too.
        self.write_netrc("notatoken", token)
        out = self.http("GET", f"{base}/instances")
        self.assertEqual(out.returncode, 4, out)

        # A netrc with login token and a wrong password is refused.
        self.write_netrc("token", token[:-1] + ("0" if token[-1] != "0" else "1"))
        out = self.http("GET", f"{base}/instances")
        self.assertEqual(out.returncode, 4, out)

        self.write_netrc("token", token)
        before = self.db.count_rows("instances")["instances"]
        out = self.http("POST", f"{base}/instances", "provider=gce", "image=image-2016-01-01",
                        "instance_type=standard")
        self.assertEqual(out.returncode, 0, out)
        inst = json.loads(out.stdout)
        self.assertEqual(inst["state"], "creating")
        self.assertEqual(inst["provider"], "gce")
        self.assertEqual(inst["image"], "image-2016-01-01")
        self.assertEqual(inst["instance_type"], "standard")
        self.assertRegex(inst["id"], UUID_RE)
        self.assertEqual(self.db.count_rows("instances")["instances"], before + 1)

        def running():
            o = self.http("GET", f"{base}/instances/{inst['id']}")
            self.assertEqual(o.returncode, 0, o)
            doc = json.loads(o.stdout)
            return doc if doc["state"] == "running" else None
        doc = wait_until(running, 30, interval=0.2, what="httpie GET to show running")
        self.assertIn(ipaddress.ip_address(doc["ip_address"]), TEST_NET)

        out = self.http("DELETE", f"{base}/instances/{inst['id']}")
        self.assertEqual(out.returncode, 0, out)
        self.assertEqual(json.loads(out.stdout)["state"], "terminating")
        # Read with the token that created it: another client token would not see it.
        wait_until(lambda: self.service.request("GET", f"/instances/{inst['id']}", token=token)
                   .json()["state"] == "terminated", 20, interval=0.2,
                   what="the instance to be terminated")

        # The log shows the requests as authenticated by the token created for httpie, and
        # never the token itself.
        log = "\n".join(self.service.log_lines())
        self.assertNotIn(token, log)


class TokenToolsTest(ServiceTestCase):
    providers = {"gce": {"type": "fake"}}

    def tool_env(self):
        env = dict(os.environ)
        env["DATABASE_URL"] = self.db.url
        return env

    def test_create_token_tool_list_and_revoke(self):
        tool = os.path.join(os.path.dirname(self.service.bin), "cloudbrain-create-token")
        self.assertTrue(os.path.exists(tool), f"{tool} (the original tool's name) is missing")
        description = "description of the token " + os.urandom(4).hex()
        out = subprocess.run([tool, description], capture_output=True, text=True,
                             env=self.tool_env(), timeout=60)
        self.assertEqual(out.returncode, 0, out)
        m = TOKEN_LINE_RE.match(out.stdout)
        self.assertIsNotNone(m, f"stdout is not exactly one 'generated token: <id>-<hex>' line: "
                                f"{out.stdout!r}")
        token, token_id = m.group(1), m.group(2)

        # The token works, and is stored only as salt + scrypt hash.
        r = self.service.request("GET", "/instances", token=token)
        self.assertEqual(r.status, 200, r)
        row = self.db.query(f"SELECT description, length(salt), length(hash) FROM tokens "
                            f"WHERE id = {token_id}")
        self.assertEqual(row, f"{description}|32|32")
        secret = token.split("-", 1)[1]
        dump = self.db.query("SELECT t::text FROM tokens t")
        self.assertNotIn(secret, dump)

        # `cloudbrain token list` shows it.
        listed = self.service.cli("token", "list")
        lines = [line for line in listed.stdout.splitlines()
                 if line.split("\t")[0] == token_id]
        self.assertEqual(len(lines), 1, listed.stdout)
        self.assertIn(description, lines[0])
        self.assertNotIn(secret, listed.stdout)

        # Use it a few times so that the service remembers it, then revoke it.
        for _ in range(3):
            r = self.service.request("GET", "/instances", token=token)
            self.assertEqual(r.status, 200, r)
        revoked = self.service.cli("token", "revoke", token_id)
        revoked_at = time.monotonic()
        self.assertIn(token_id, revoked.stdout)

        def refused():
            r = self.service.request("GET", "/instances", token=token, timeout=5)
            return r.status == 401
        wait_until(refused, 5.0, interval=0.1, what="the revoked token to get 401")
        self.assertLess(time.monotonic() - revoked_at, 5.5)
        # ... and it stays refused.
        for _ in range(5):
            r = self.service.request("GET", "/instances", token=token)
            self.assertEqual(r.status, 401, r)
            self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="cloudbrain"')
        listed = self.service.cli("token", "list")
        line = [x for x in listed.stdout.splitlines() if x.split("\t")[0] == token_id][0]
        self.assertNotEqual(line.split("\t")[2], "-", f"list does not show the revocation: {line}")

        # Another token is unaffected.
        r = self.service.request("GET", "/instances")
        self.assertEqual(r.status, 200, r)

    def test_revocation_reaches_every_node(self):
        # Two processes on one database, both remembering the token.
        second = Service(self.db, providers=self.providers).start()
        self.addCleanup(lambda: self.assertEqual(second.stop(), 0, second.log_tail()))
        token = self.service.create_token("used on two nodes")
        for node in (self.service, second, self.service, second):
            r = node.request("GET", "/instances", token=token)
            self.assertEqual(r.status, 200, r)
        self.service.cli("token", "revoke", token.split("-", 1)[0])
        revoked_at = time.monotonic()
        for node in (second, self.service):
            wait_until(lambda: node.request("GET", "/instances", token=token,
                                            timeout=5).status == 401,
                       max(0.1, 5.5 - (time.monotonic() - revoked_at)), interval=0.1,
                       what=f"node on port {node.port} to refuse the revoked token")

    def test_token_create_prints_one_line(self):
        out = self.service.cli("token", "create", "via the subcommand")
        self.assertRegex(out.stdout, TOKEN_LINE_RE)
        token = TOKEN_LINE_RE.match(out.stdout).group(1)
        r = self.service.request("GET", "/instances", token=token)
        self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main()
