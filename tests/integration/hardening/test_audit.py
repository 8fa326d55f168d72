"""The audit trail against the real binary: a scripted session of mutations, reads and refusals
through HTTP and the command line, and `cloudbrain audit` shows every mutation (POST and DELETE
answered, token create and revoke) with its token, request id, address and outcome, and
nothing else: no GET, no request refused before its token was known.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import json
import subprocess
import unittest

from cloudbrain_test import ServiceTestCase, wait_until


class ScriptedSession(ServiceTestCase):
    def audit(self, *args):
        out = self.service.cli("audit", "--json", *args)
        return json.loads(out.stdout)

    def test_every_mutation_and_nothing_else(self):
        svc = self.service
        token = svc.token  # token.create by the command line
        token_id = int(token.split("-")[0])
        before = self.audit()["events"]
        self.assertEqual([(e["action"], e["target"]) for e in before],
                         [("token.create", str(token_id))])

        # Mutations through HTTP, answered with success or with a refusal.
        created = svc.request("POST", "/instances", {"provider": "gce", "image": "img-1"},
                              headers={"X-Request-ID": "audit-create-1"})
        self.assertEqual(created.status, 201, created)
        instance = created.json()["id"]
        invalid = svc.request("POST", "/instances", {"provider": "nowhere", "image": "img"},
                              headers={"X-Request-ID": "audit-create-2"})
        self.assertEqual(invalid.status, 422, invalid)
        # Reads and an unauthenticated attempt: not in the trail.
        self.assertEqual(svc.request("GET", "/instances/" + instance).status, 200)
        self.assertEqual(svc.request("GET", "/instances").status, 200)
        self.assertEqual(svc.request("POST", "/instances", {"provider": "gce", "image": "x"},
                                     auth=False).status, 401)
        self.wait_state(instance, "running")
        deleted = svc.request("DELETE", "/instances/" + instance,
                              headers={"X-Request-ID": "audit-delete-1"})
        self.assertEqual(deleted.status, 202, deleted)
        reserved = svc.request("POST", "/reservations",
                               {"provider": "gce", "count": 1, "duration_minutes": 30})
        self.assertEqual(reserved.status, 201, reserved)
        reservation = reserved.json()["id"]
        cancelled = svc.request("DELETE", "/reservations/" + reservation)
        self.assertIn(cancelled.status, (200, 202), cancelled)
        missing = svc.request("DELETE", "/instances/00000000-0000-7000-8000-000000000000")
        self.assertEqual(missing.status, 404, missing)

        # The command line's token commands.
        other = svc.create_token("second")
        other_id = int(other.split("-")[0])
        svc.cli("token", "revoke", str(other_id))
        svc.cli("token", "revoke", str(other_id))

        events = list(reversed(self.audit()["events"]))  # oldest first
        got = [(e["method"], e["action"], e["status"], e["outcome"]) for e in events]
        self.assertEqual(got, [
            ("CLI", "token.create", 0, "ok"),
            ("POST", "instances.create", 201, "ok"),
            ("POST", "instances.create", 422, "unknown_provider"),
            ("DELETE", "instances.delete", 202, "ok"),
            ("POST", "reservations.create", 201, "ok"),
            ("DELETE", "reservations.cancel", cancelled.status, "ok"),
            ("DELETE", "instances.delete", 404, "instance_not_found"),
            ("CLI", "token.create", 0, "ok"),
            ("CLI", "token.revoke", 0, "ok"),
            ("CLI", "token.revoke", 0, "already_revoked"),
        ])
        http_events = [e for e in events if e["method"] != "CLI"]
        for e in http_events:
            self.assertEqual(e["token_id"], token_id, e)
            self.assertEqual(e["address"], "127.0.0.1", e)
            self.assertTrue(e["request_id"], e)
        self.assertEqual(http_events[0]["request_id"], "audit-create-1")
        self.assertEqual(http_events[0]["target"], instance)
        self.assertEqual(http_events[1]["request_id"], "audit-create-2")
        self.assertEqual(http_events[2]["target"], "/instances/" + instance)
        self.assertEqual(http_events[3]["target"], reservation)
        for e in events:
            if e["method"] == "CLI":
                self.assertIsNone(e["token_id"], e)
                self.assertEqual(e["address"], "cli", e)
        self.assertEqual(events[-1]["target"], str(other_id))

        # Filters and paging.
        only_creates = self.audit("--action", "instances.create")["events"]
        self.assertEqual(len(only_creates), 2)
        first = self.audit("--limit", "3")
        self.assertEqual(len(first["events"]), 3)
        rest = self.audit("--before", str(first["next_before"]), "--limit", "100")
        self.assertEqual([e["id"] for e in first["events"] + rest["events"]],
                         [e["id"] for e in reversed(events)])
        table = self.service.cli("audit", "--token", str(token_id)).stdout.splitlines()
        self.assertTrue(table[0].startswith("ID\tAT\tTOKEN"), table[0])
        self.assertEqual(len(table) - 1, len(http_events))

        # Nobody edits it, not even the service's own database role.
        out = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", self.db.url, "-c",
                              "UPDATE audit_events SET outcome = 'ok'"],
                             capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("audit_events is append-only", out.stderr)

    def test_a_bad_option_is_named(self):
        out = self.service.cli("audit", "--limit", "0", check=False)
        self.assertEqual(out.returncode, 2)
        self.assertIn("cannot use '--limit'", out.stderr)


class CreateRecords(ServiceTestCase):
    def audit(self, *args):
        out = self.service.cli("audit", "--json", *args)
        return json.loads(out.stdout)

    def test_each_create_and_delete_is_recorded_once_whichever_way_it_is_stored(self):
        """A stored create writes its record in its own transaction (batched, or alone into a
        reservation), and so does a delete answered with its instance; a replay and a refusal
        are recorded as they are answered. Concurrent requests share batches: every one has its
        own record, with its own request id."""
        svc = self.service
        token_id = int(svc.token.split("-")[0])
        start = self.audit("--limit", "1")["events"][0]["id"]

        def create(i, extra=None, key=None, image=None):
            headers = {"X-Request-ID": f"audit-many-{i}"}
            if key:
                headers["Idempotency-Key"] = key
            body = {"provider": "gce", "image": image or "img-%d" % i}
            body.update(extra or {})
            return svc.request("POST", "/instances", body, headers=headers)

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(create, range(40)))
        for r in answers:
            self.assertEqual(r.status, 201, r)
        first = create(100, key="audit-key-1", image="img-keyed")
        replay = create(101, key="audit-key-1", image="img-keyed")
        self.assertEqual(first.status, 201, first)
        self.assertEqual(replay.status, 201, replay)
        self.assertEqual(replay.header("Idempotent-Replayed"), "true")
        reserved = svc.request("POST", "/reservations",
                               {"provider": "gce", "count": 1, "duration_minutes": 30})
        self.assertEqual(reserved.status, 201, reserved)
        rid = reserved.json()["id"]
        wait_until(lambda: svc.request("GET", "/reservations/" + rid).json()["state"] == "active",
                   30, what="the reservation to be active")
        launched = create(102, {"reservation_id": rid})
        self.assertEqual(launched.status, 201, launched)
        full = create(103, {"reservation_id": rid})
        self.assertEqual(full.status, 409, full)

        events = [e for e in self.audit("--action", "instances.create", "--limit", "1000")["events"]
                  if e["id"] > start]
        by_request = {}
        for e in events:
            self.assertNotIn(e["request_id"], by_request, e)
            by_request[e["request_id"]] = e
            self.assertEqual((e["token_id"], e["address"], e["method"]),
                             (token_id, "127.0.0.1", "POST"), e)
        expected = {f"audit-many-{i}": (201, "ok", answers[i].json()["id"]) for i in range(40)}
        expected["audit-many-100"] = (201, "ok", first.json()["id"])
        expected["audit-many-101"] = (201, "ok", first.json()["id"])
        expected["audit-many-102"] = (201, "ok", launched.json()["id"])
        expected["audit-many-103"] = (409, full.json()["code"], "/instances")
        self.assertEqual({k: (e["status"], e["outcome"], e["target"])
                          for k, e in by_request.items()}, expected)
        # Every instance row has the record of the create that stored it, and no other row does.
        # 40 at once, the keyed one, the one into the reservation.
        stored = self.db.query(
            "SELECT (SELECT count(*) FROM instances), count(*), count(DISTINCT a.id)"
            " FROM instances i JOIN audit_events a"
            " ON a.target = i.id::text AND a.action = 'instances.create' AND a.status = 201"
            f" AND a.request_id <> 'audit-many-101' WHERE a.id > {start}")
        self.assertEqual(stored.strip(), "42|42|42")

        # Deletes share batches too: each one answered with its instance has its own record,
        # written with the change; one of an unknown id is recorded as it is answered.
        ids = [answers[i].json()["id"] for i in range(40)]

        def delete(i):
            return svc.request("DELETE", "/instances/" + ids[i % 40],
                               headers={"X-Request-ID": f"audit-delete-{i}"})

        last = self.audit("--limit", "1")["events"][0]["id"]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            deleted = list(pool.map(delete, range(60)))  # 20 of them twice
        for r in deleted:
            self.assertEqual(r.status, 202, r)
        missing = svc.request("DELETE", "/instances/00000000-0000-7000-8000-000000000000",
                              headers={"X-Request-ID": "audit-delete-missing"})
        self.assertEqual(missing.status, 404, missing)
        events = [e for e in self.audit("--action", "instances.delete", "--limit", "1000")["events"]
                  if e["id"] > last]
        got = {e["request_id"]: (e["status"], e["outcome"], e["target"], e["token_id"])
               for e in events}
        self.assertEqual(len(events), len(got))
        want = {f"audit-delete-{i}": (202, "ok", "/instances/" + ids[i % 40], token_id)
                for i in range(60)}
        want["audit-delete-missing"] = (404, "instance_not_found",
                                        "/instances/00000000-0000-7000-8000-000000000000",
                                        token_id)
        self.assertEqual(got, want)


class AdminRead(ServiceTestCase):
    def test_get_audit_is_for_admin_tokens_only(self):
        svc = self.service
        admin = svc.cli("token", "create", "--role", "admin", "auditor").stdout.split(": ")[1].strip()
        client = svc.create_token("plain client")
        self.assertEqual(svc.request("POST", "/instances", {"provider": "gce", "image": "img"},
                                     token=client).status, 201)
        r = svc.request("GET", "/audit", token=client)
        self.assertEqual(r.status, 403, r)
        self.assertEqual(r.json()["code"], "role_not_allowed")
        self.assertEqual(svc.request("GET", "/audit", auth=False).status, 401)
        client_id = int(client.split("-")[0])
        r = svc.request("GET", "/audit?token=%d&limit=10" % client_id, token=admin)
        self.assertEqual(r.status, 200, r)
        page = r.json()
        self.assertEqual([(e["action"], e["status"]) for e in page["events"]],
                         [("instances.create", 201)])
        self.assertIsNone(page["next_before"])
        # The admin's read is not a mutation: the trail did not grow by it.
        again = svc.request("GET", "/audit?token=%d" % client_id, token=admin).json()
        self.assertEqual(len(again["events"]), 1)
        r = svc.request("GET", "/audit?limit=0&color=red", token=admin)
        self.assertEqual(r.status, 422, r)
        self.assertIn("'limit' must be a whole number from 1 to 1000", r.body)
        self.assertIn("unknown parameter 'color'", r.body)


if __name__ == "__main__":
    unittest.main()
