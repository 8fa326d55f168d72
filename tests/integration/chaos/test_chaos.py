"""Nothing lost, nothing doubled when PostgreSQL restarts under cloudbrain: 80 creates with
Idempotency-Keys while the database goes away and comes back, against the GCE emulator (its own
process). Every instance ends running with exactly one VM. (SIGKILLs of cloudbrain itself, on
every cloud: tests/integration/clouds/test_chaos.py.)

stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import concurrent.futures
import threading
import time
import unittest
import uuid

import gce_service
from chaos import Client, wait_all
from cloudbrain_test import Database, PgCluster, Service
from gce_service import SA_EMAIL, gce_section, make_key_file


def setUpModule():
    global EMU
    EMU = gce_service.start_emulator()


def tearDownModule():
    gce_service.stop_emulator()


def ours(deployment):
    return [v for v in EMU.control("GET", "instances")["instances"]
            if v["labels"].get("cloudbrain-deployment") == deployment]


class ChaosBase(unittest.TestCase):
    maxDiff = None

    def start_service(self, db, deployment):
        key, _ = make_key_file(SA_EMAIL)
        service = Service(db, providers={"gce": gce_section(
            credentials=key, **{"rate-limit": "400", "max-in-flight": "100",
                                "external-ip": "false"})}, settings={
            "deployment": deployment, "job-lease": "2s", "job-max-attempts": "30",
            "reconcile-interval": "2s", "orphan-grace": "20s"})
        service.start()
        self.addCleanup(service.stop)
        service.token  # made now, while PostgreSQL is certainly up (the CLI writes it there)
        return service

    def check_exactly_one_vm_each(self, deployment, ids):
        names = [v["name"] for v in ours(deployment)]
        created = EMU.control("GET", "counters")["instances_created"]
        self.assertEqual(len(names), len(set(names)), "VMs made twice")
        self.assertEqual([n for n in set(names) if created.get(n, 0) > 1], [],
                         "names created more than once")
        self.assertEqual(sorted(names), sorted("cb-" + i for i in ids))


class PostgresRestart(ChaosBase):
    def test_postgres_restarted_mid_run_loses_and_doubles_nothing(self):
        cluster = PgCluster().start()
        self.addCleanup(cluster.destroy)
        cluster.deploy_schema()
        db = Database.attach(cluster.url())
        deployment = "pgrestart-" + uuid.uuid4().hex[:8]
        service = self.start_service(db, deployment)
        client = Client(service)
        n = 80
        keys = [str(uuid.uuid4()) for _ in range(n)]
        restarter_error = []

        def restart():
            try:
                time.sleep(1.0)
                cluster.stop("fast")
                time.sleep(2.0)
                cluster.start()
            except Exception as e:
                restarter_error.append(e)
        t = threading.Thread(target=restart, daemon=True)
        t.start()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(lambda k: client.call(
                "POST", "/instances", {"provider": "gce", "image": "family/debian-12",
                                       "tags": {"run": deployment}},
                headers={"Idempotency-Key": k}).json()["id"], keys))
        t.join(60)
        self.assertEqual(restarter_error, [])
        self.assertEqual(len(set(ids)), n)

        wait_all(db, client, deployment, "running", n, 180)
        self.assertEqual(int(db.query("SELECT count(*) FROM instances")), n)
        self.check_exactly_one_vm_each(deployment, ids)


if __name__ == "__main__":
    unittest.main()
