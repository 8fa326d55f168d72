"""Group commit of DELETE /instances/:id, through the real binary against PostgreSQL.

DeletesAnswered: 1,800 concurrent deletes (64 at a time) of instances in every state, of ids no
instance has, and of the same instance twice at once: each is answered by its own instance's
outcome (202 with the instance terminating, 202 with a terminating or terminated instance as
it was, 404 for an unknown id), each deletable instance gets exactly one delete job and one
event, every delete is in the audit trail with its answer, and nothing else changes. The
instances belong to a provider the service does not run, so that no job moves them afterwards.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import random
import time
import unittest
import uuid

from cloudbrain_test import ServiceTestCase

FAKE = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms"}}
STATES = ("creating", "starting", "running", "errored", "terminating", "terminated")
DELETABLE = ("creating", "starting", "running", "errored")


class DeletesAnswered(ServiceTestCase):
    providers = FAKE
    settings = {"log-level": "warn"}
    PER_STATE = 300  # instances in each state; two thirds of them deleted
    UNKNOWN = 300  # deletes of ids that no instance has
    TWICE = 300  # instances deleted twice at once

    def metric(self, name, queue):
        r = self.service.request("GET", "/metrics", auth=False)
        self.assertEqual(r.status, 200)
        prefix = f'{name}{{queue="{queue}"}} '
        values = [line[len(prefix):] for line in r.body.splitlines() if line.startswith(prefix)]
        self.assertEqual(len(values), 1, f"{prefix!r} in /metrics")
        return float(values[0])

    def test_concurrent_deletes_each_get_their_own_answer(self):
        self.service.request("GET", "/instances?limit=1")  # the token is verified up front
        token_id = self.db.query("SELECT max(id) FROM tokens")
        total = self.PER_STATE * len(STATES)
        self.db.query(
            "INSERT INTO instances (id, provider, image, instance_type, state, created_by, tags) "
            "SELECT gen_random_uuid(), 'parked', 'image-' || n, 'standard', "
            f"(ARRAY{list(STATES)}::instance_state[])[1 + n % {len(STATES)}], {token_id}, "
            "jsonb_build_object('n', n::text) "
            f"FROM generate_series(0, {total - 1}) n")
        before = {}  # id -> (state, version, updated_at)
        for line in self.db.query("SELECT id, state, version, updated_at FROM instances "
                                  "WHERE provider = 'parked'").splitlines():
            i, state, version, updated = line.split("|")
            before[i] = (state, version, updated)
        self.assertEqual(len(before), total)
        events_before = int(self.db.query("SELECT count(*) FROM instance_events"))

        rng = random.Random(18)
        ids = sorted(before)
        rng.shuffle(ids)
        deleted = ids[: 2 * total // 3]
        untouched = set(ids[2 * total // 3:])
        twice = deleted[: self.TWICE]
        unknown = [str(uuid.uuid4()) for _ in range(self.UNKNOWN)]
        targets = deleted + twice + unknown
        rng.shuffle(targets)
        deletes_before = self.metric("cloudbrain_batch_queue_items_total", "instance_deletes")
        batches_before = self.metric("cloudbrain_batch_queue_batches_total", "instance_deletes")

        def delete(n):
            return n, self.service.request("DELETE", f"/instances/{targets[n]}",
                                           headers={"X-Request-ID": f"delete-{n}"}, timeout=60)

        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(delete, range(len(targets)), timeout=120))
        took = time.monotonic() - started

        unknown_set = set(unknown)
        for n, r in results:
            target = targets[n]
            if target in unknown_set:
                p = self.assertProblem(r, 404, "instance_not_found")
                self.assertIn(target, p["detail"], p)
                continue
            self.assertEqual(r.status, 202, (target, r))
            body = r.json()
            self.assertEqual(body["id"], target)
            self.assertEqual(body["provider"], "parked")
            self.assertEqual(body["tags"], {"n": body["image"].split("-", 1)[1]}, body)
            state = before[target][0]
            self.assertEqual(body["state"], "terminating" if state in DELETABLE else state,
                             (state, body))

        # In the database: each deletable instance deleted is terminating with one delete job
        # and one event more; the others are as they were, to their version.
        after = {}
        for line in self.db.query("SELECT id, state, version, updated_at, delete_requested "
                                  "FROM instances").splitlines():
            i, state, version, updated, requested = line.split("|")
            after[i] = (state, version, updated, requested)
        self.assertEqual(set(after), set(before), "instances were added or removed")
        moved = {i for i in deleted if before[i][0] in DELETABLE}
        for i, (state, version, updated, requested) in after.items():
            if i in moved:
                self.assertEqual((state, version, requested),
                                 ("terminating", str(int(before[i][1]) + 1), "t"), i)
            else:
                self.assertEqual((state, version, updated, requested),
                                 before[i] + ("f",), (i, i in untouched))
        jobs = self.db.query("SELECT instance_id, kind, state, cloud_key FROM jobs").splitlines()
        self.assertEqual(sorted(jobs),
                         sorted(f"{i}|delete_instance|queued|delete-{i}" for i in moved))
        events = self.db.query(
            f"SELECT instance_id, from_state, to_state FROM instance_events "
            f"ORDER BY id OFFSET {events_before}").splitlines()
        self.assertEqual(sorted(events),
                         sorted(f"{i}|{before[i][0]}|terminating" for i in moved))

        # Every delete in the audit trail, with the answer it got.
        audited = self.db.query(
            "SELECT request_id, target, status, outcome FROM audit_events "
            "WHERE action = 'instances.delete'").splitlines()
        expected = []
        for n, target in enumerate(targets):
            if target in unknown_set:
                expected.append(f"delete-{n}|/instances/{target}|404|instance_not_found")
            else:
                expected.append(f"delete-{n}|/instances/{target}|202|ok")
        self.assertEqual(sorted(audited), sorted(expected))

        # The batch queue counted every delete, in batches.
        items = self.metric("cloudbrain_batch_queue_items_total", "instance_deletes")
        batches = self.metric("cloudbrain_batch_queue_batches_total", "instance_deletes")
        self.assertEqual(items - deletes_before, len(targets))
        self.assertGreaterEqual(batches - batches_before, 1)
        self.assertLessEqual(batches - batches_before, len(targets))
        self.assertEqual(self.metric("cloudbrain_batch_queue_refused_total", "instance_deletes"), 0)
        print(f"\n{len(targets)} deletes ({len(moved)} moved, {len(unknown)} unknown ids) "
              f"answered in {took:.1f}s, {batches - batches_before:.0f} batches",
              flush=True)


if __name__ == "__main__":
    unittest.main()
