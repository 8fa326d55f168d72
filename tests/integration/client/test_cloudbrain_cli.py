"""deploy/client/cloudbrain-cli, the httpie-based client, against the real service: an instance
created, read and deleted through it; a reservation made and cancelled by its tag; the token
from CLOUDBRAIN_TOKEN or from ~/.netrc; the original script's `post instances ...` form; and
clear usage errors, before any request, for an unknown command and bad input."""

import json
import os
import shutil
import subprocess
import tempfile
import uuid

from cloudbrain_test import ServiceTestCase, wait_until

SOURCE_DIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLI = os.path.join(SOURCE_DIR, "deploy", "client", "cloudbrain-cli")


class CloudbrainCliTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "20ms"}}

    def setUp(self):
        self.home = tempfile.mkdtemp(prefix="cb-cli-home-")
        self.addCleanup(shutil.rmtree, self.home, True)
        self.tmp = os.path.join(self.home, "tmp")
        os.mkdir(self.tmp)
        # httpie's own update check would reach out of the machine; tests talk to loopback only.
        config_dir = os.path.join(self.home, "httpie")
        os.mkdir(config_dir)
        with open(os.path.join(config_dir, "config.json"), "w") as f:
            json.dump({"disable_update_warnings": True}, f)
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("HTTP", "http_", "https_", "NETRC", "REQUESTS_",
                                         "CLOUDBRAIN_TOKEN"))}
        self.env.update({"HOME": self.home, "TMPDIR": self.tmp, "HTTPIE_CONFIG_DIR": config_dir,
                         "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1",
                         "CLOUDBRAIN_URL": self.service.url()})

    def cli(self, *args, token=True, env=None):
        full_env = dict(self.env)
        if token:
            full_env["CLOUDBRAIN_TOKEN"] = self.service.token
        full_env.update(env or {})
        return subprocess.run([CLI, *args], capture_output=True, text=True, env=full_env,
                              timeout=60, stdin=subprocess.DEVNULL)

    def ok(self, *args, **kw):
        out = self.cli(*args, **kw)
        self.assertEqual(out.returncode, 0, f"cloudbrain-cli {' '.join(args)}: {out.stderr}")
        return out

    def json(self, *args, **kw):
        return json.loads(self.ok(*args, **kw).stdout)

    def usage_error(self, *args, mentions=(), **kw):
        out = self.cli(*args, **kw)
        self.assertEqual(out.returncode, 2, f"cloudbrain-cli {' '.join(args)}: {out}")
        self.assertEqual(out.stdout, "")
        self.assertIn("cloudbrain-cli help", out.stderr)
        for word in mentions:
            self.assertIn(word, out.stderr)
        return out

    def test_instance_create_get_delete(self):
        key_file = os.path.join(self.home, "id.pub")
        with open(key_file, "w") as f:
            f.write("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA cli@example.org\n")
        created = self.json("instances", "create", "provider=gce", "image=image-2016-01-01",
                            "instance_type=premium", f"public_ssh_key=@{key_file}",
                            "tag.team=cli", "idempotency_key=cli-" + uuid.uuid4().hex)
        self.assertEqual((created["state"], created["instance_type"], created["tags"]),
                         ("creating", "premium", {"team": "cli"}))
        self.assertEqual(created["public_ssh_key"],
                         "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA cli@example.org")

        def running():
            doc = self.json("instances", "get", created["id"])
            return doc if doc["state"] == "running" else None
        self.assertIsNotNone(wait_until(running, 30, interval=0.2, what="running")["ip_address"])
        listed = self.json("instances", "list", "tag.team=cli", "state=running", "limit=10")
        self.assertEqual([i["id"] for i in listed["instances"]], [created["id"]])

        deleted = self.json("instances", "delete", created["id"])
        self.assertEqual(deleted["state"], "terminating")
        wait_until(lambda: self.json("instances", "get", created["id"])["state"] == "terminated",
                   30, interval=0.2, what="terminated")
        # The token went through a private netrc file, removed afterwards.
        self.assertEqual(os.listdir(self.tmp), [])

    def test_reservation_create_and_cancel_by_tag(self):
        run = "cli-" + uuid.uuid4().hex[:8]
        created = self.json("reservations", "create", "provider=gce", "count=2",
                            "zones=zone-b,zone-a", "duration_minutes=45", f"tag.run={run}")
        self.assertEqual((created["state"], created["count"], created["zones"]),
                         ("pending", 2, ["zone-b", "zone-a"]))
        wait_until(lambda: self.json("reservations", "get", created["id"])["state"] == "active",
                   30, interval=0.2, what="active")
        moved = self.json("reservations", "cancel-by-tag", f"tag.run={run}", "provider=gce")
        self.assertEqual([(r["id"], r["state"]) for r in moved["reservations"]],
                         [(created["id"], "cancelling")])
        wait_until(lambda: self.json("reservations", "get", created["id"])["state"] == "cancelled",
                   30, interval=0.2, what="cancelled")
        listed = self.json("reservations", "list", f"tag.run={run}", "state=cancelled")
        self.assertEqual([r["id"] for r in listed["reservations"]], [created["id"]])
        again = self.json("reservations", "cancel", created["id"])
        self.assertEqual(again["state"], "cancelled")

    def test_reservation_set_create_list_and_cancel(self):
        run = "cli-" + uuid.uuid4().hex[:8]
        key = "cli-set-" + uuid.uuid4().hex
        args = ("reservation-sets", "create", "placement=gce:2:premium:zone-b,zone-a",
                "placement=gce:1", "on_partial=keep", "duration_minutes=45", f"tag.run={run}",
                f"idempotency_key={key}")
        created = self.json(*args)
        self.assertEqual(created["on_partial"], "keep")
        self.assertEqual([(m["count"], m["instance_type"], m["zones"])
                          for m in created["reservations"]],
                         [(2, "premium", ["zone-b", "zone-a"]), (1, "standard", [])])
        self.assertEqual(self.json(*args)["id"], created["id"], "the key did not replay")
        wait_until(lambda: self.json("reservation-sets", "get", created["id"])["state"]
                   == "active", 30, interval=0.2, what="active")
        listed = self.json("reservation-sets", "list", f"tag.run={run}", "state=active")
        self.assertEqual([s["id"] for s in listed["reservation_sets"]], [created["id"]])
        self.assertEqual(self.json("reservation-sets", "cancel", created["id"])["state"],
                         "cancelling")
        wait_until(lambda: self.json("reservation-sets", "get", created["id"])["state"]
                   == "cancelled", 30, interval=0.2, what="cancelled")

    def test_usage_report_as_json_and_csv(self):
        run = "cli-" + uuid.uuid4().hex[:8]
        created = self.json("instances", "create", "provider=gce", "image=i", f"tag.run={run}")
        wait_until(lambda: self.json("instances", "get", created["id"])["state"] == "running",
                   30, interval=0.2, what="running")
        report = self.json("usage", f"tag.run={run}", "group_by=provider,tag.run")
        self.assertEqual([g["group"] for g in report["groups"]],
                         [{"provider": "gce", "tag.run": run}])
        self.assertEqual(report["total"]["instances"], 1)
        text = self.ok("usage", f"tag.run={run}", "group_by=provider", "format=csv").stdout
        lines = text.strip().splitlines()
        self.assertEqual(lines[0].split(",")[:3], ["provider", "instances", "reservations"])
        self.assertEqual(lines[1].split(",")[:2], ["gce", "1"])
        self.json("instances", "delete", created["id"])

    def test_providers_health_and_the_original_scripts_form(self):
        providers = self.json("providers")["providers"]
        self.assertEqual([p["name"] for p in providers], ["gce"])
        health = self.ok("health", token=False).stdout.splitlines()
        self.assertEqual([json.loads(line)["status"] for line in health], ["ok", "ready"])
        created = self.json("post", "instances", "provider=gce", "image=image-2016-01-01")
        self.assertEqual(self.json("get", "instances/" + created["id"])["id"], created["id"])
        self.assertEqual(self.json("delete", "instances/" + created["id"])["state"], "terminating")

    def test_the_token_from_netrc_as_httpie_reads_it(self):
        out = self.cli("providers", token=False)
        self.assertEqual(out.returncode, 4, out)  # httpie's --check-status: a 4xx
        self.assertEqual(json.loads(out.stdout)["code"], "invalid_token")
        netrc = os.path.join(self.home, ".netrc")
        with open(netrc, "w") as f:
            f.write(f"machine 127.0.0.1\n  login token\n  password {self.service.token}\n")
        os.chmod(netrc, 0o600)
        self.assertEqual(self.json("providers", token=False)["providers"][0]["name"], "gce")

    def test_http_errors_keep_the_problem_and_set_the_exit_status(self):
        out = self.cli("instances", "get", str(uuid.uuid4()))
        self.assertEqual(out.returncode, 4, out)
        self.assertEqual(json.loads(out.stdout)["code"], "instance_not_found")
        out = self.cli("instances", "create", "provider=aws", "image=x")
        self.assertEqual(out.returncode, 4, out)
        self.assertEqual(json.loads(out.stdout)["code"], "unknown_provider")
        out = self.cli("--url", "http://127.0.0.1:1", "providers")
        self.assertEqual(out.returncode, 1, out)
        out = self.cli("-i", "instances", "get", str(uuid.uuid4()))
        self.assertTrue(out.stdout.startswith("HTTP/1.1 404 Not Found"), out.stdout)
        self.assertIn("X-Request-ID:", out.stdout)

    def test_usage(self):
        out = self.ok("help", token=False)
        for word in ("instances create", "reservations cancel-by-tag", "CLOUDBRAIN_URL",
                     "CLOUDBRAIN_TOKEN", ".netrc"):
            self.assertIn(word, out.stdout)
        out = self.cli(token=False)
        self.assertEqual(out.returncode, 2)
        self.assertIn("Usage:", out.stderr)
        self.usage_error("frobnicate", mentions=["unknown command 'frobnicate'"])
        self.usage_error("instances", "frobnicate", mentions=["unknown instances subcommand"])
        self.usage_error("instances", "cancel", str(uuid.uuid4()))
        self.usage_error("instances", mentions=["needs a subcommand"])
        self.usage_error("--bogus", "providers", mentions=["unknown option '--bogus'"])

    def test_bad_input_is_refused_before_any_request(self):
        before = self.db.count_rows("instances", "reservations", "reservation_sets")
        cases = [
            (("instances", "get", "not-a-uuid"), "'not-a-uuid' is not an id"),
            (("instances", "get"), "needs exactly one id"),
            (("instances", "delete", "a", "b"), "needs exactly one id"),
            (("instances", "create", "image=x"), "needs provider=..."),
            (("instances", "create", "provider=gce", "image=x", "colour=red"),
             "unknown instance field 'colour'"),
            (("instances", "create", "provider=gce", "image"), "'image' is not KEY=VALUE"),
            (("instances", "create", "provider=gce", "image=x", "image=y"), "given twice"),
            (("instances", "create", "provider=gce", "image=x", "public_ssh_key=@/nonexistent"),
             "cannot read the public key"),
            (("instances", "list", "colour=red"), "unknown filter 'colour'"),
            (("reservations", "create", "provider=gce", "count=many"),
             "'count' must be a whole number"),
            (("reservations", "create", "provider=gce"), "needs count=..."),
            (("reservations", "cancel-by-tag", "provider=gce"), "at least one tag.KEY=VALUE"),
            (("providers", "extra"), "takes no arguments"),
            (("reservation-sets", "create", "on_partial=keep"), "at least one placement"),
            (("reservation-sets", "create", "placement=gce"), "'placement' is PROVIDER:COUNT"),
            (("reservation-sets", "create", "placement=gce:two"), "'placement' is PROVIDER:COUNT"),
            (("reservation-sets", "create", "placement=gce:1", "provider=gce"),
             "unknown reservation-set field 'provider'"),
            (("reservation-sets", "get", "nope"), "'nope' is not an id"),
            (("reservation-sets", "list", "provider=gce"), "unknown filter 'provider'"),
            (("usage", "format=xml"), "format is json or csv"),
            (("usage", "colour=red"), "unknown filter 'colour'"),
            (("--url", "127.0.0.1:8080", "providers"), "the URL must be"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                self.usage_error(*args, mentions=[message])
        self.usage_error("providers", env={"CLOUDBRAIN_TOKEN": "not-a-token"},
                         mentions=["CLOUDBRAIN_TOKEN is not a token"])
        self.assertEqual(self.db.count_rows("instances", "reservations", "reservation_sets"),
                         before)
