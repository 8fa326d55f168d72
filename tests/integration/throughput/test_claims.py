"""Job claims against a long queue, through the real binary against PostgreSQL.

A merge train's creates queue up by the thousand behind a cloud's rate limit, and a prepared
statement that has run a few times settles on its generic plan, made without the parameters'
values. ClaimsReadTheirLimit: with 20,000 create jobs queued and every statement of the service
on its generic plan (plan_cache_mode = force_generic_plan for its database), the service claims
and runs a few hundred of them without reading the jobs or the instances table from end to end:
PostgreSQL's own count of sequential scans of either stays where it was. A claim once joined
the jobs it took to every job and every instance with a hash over a full scan of each: 150 ms a
claim at 230,000 queued jobs.

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import time
import unittest

from cloudbrain_test import Database, Service, via_pgbouncer

FAKE = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "10ms",
                "rate-limit": "200", "max-in-flight": "20"}}


def seq_scans(db):
    """{table: sequential scans so far} for jobs and instances, as PostgreSQL counts them."""
    out = db.query("SELECT relname, seq_scan FROM pg_stat_user_tables "
                   "WHERE relname IN ('jobs', 'instances') ORDER BY relname")
    return {name: int(n) for name, n in (line.split("|") for line in out.splitlines())}


class ClaimsReadTheirLimit(unittest.TestCase):
    QUEUED = 20000
    RUN = 300  # VMs the service is to boot

    def test_no_full_scan_of_jobs_or_instances(self):
        if via_pgbouncer():
            self.skipTest("through PgBouncer the service prepares no statements: no generic plans")
        db = Database()
        self.addCleanup(db.drop)
        db.query(f'ALTER DATABASE "{db.name}" SET plan_cache_mode = force_generic_plan')
        # The queue, loaded with triggers off (no events, no NOTIFY): instances as creates
        # leave them, each with its create job, oldest first.
        db.query(f"""
BEGIN;
SET LOCAL session_replication_role = replica;
INSERT INTO instances (id, provider, image, instance_type, zone, tags, created_at)
SELECT gen_random_uuid(), 'gce', 'queued-' || g, 'standard', 'zone-a', '{{}}',
       now() - interval '1 hour' + g * interval '1 ms'
FROM generate_series(1, {self.QUEUED}) g;
INSERT INTO jobs (kind, instance_id, provider, cloud_key, run_at)
SELECT 'create_instance', id, 'gce', 'create-' || id, created_at FROM instances;
COMMIT;
ANALYZE jobs;
ANALYZE instances;""")
        before = seq_scans(db)

        service = Service(db, providers=FAKE,
                          settings={"log-level": "warn", "reconcile-interval": "1h"})
        service.start()
        self.addCleanup(service.stop)
        # Progress as the fake cloud counts it: a query of the test's own would scan too.
        deadline = time.monotonic() + 60
        booted = 0
        while booted < self.RUN:
            self.assertLess(time.monotonic(), deadline,
                            f"only {booted} of {self.RUN} VMs booted in 60 s:\n"
                            f"{service.log_tail()}")
            time.sleep(0.5)
            r = service.request("GET", "/providers")
            self.assertEqual(r.status, 200, r)
            booted = r.json()["providers"][0]["details"]["vms"]
        self.assertEqual(service.stop(), 0)
        # A backend reports its counts when it ends: wait for the service's to be gone.
        deadline = time.monotonic() + 30
        while int(db.query("SELECT count(*) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")):
            self.assertLess(time.monotonic(), deadline, "the service's connections stayed open")
            time.sleep(0.1)
        after = seq_scans(db)

        done = int(db.query("SELECT count(*) FROM jobs WHERE state = 'succeeded'"))
        self.assertGreaterEqual(done, self.RUN)  # the claims took the jobs and ran them
        self.assertEqual(after, before,
                         "the service read jobs or instances from end to end "
                         "(pg_stat_user_tables.seq_scan before and after)")


if __name__ == "__main__":
    unittest.main()
