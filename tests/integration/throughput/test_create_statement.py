"""The bench's ceiling at the database alone runs the service's own create statement.

bench/http/create_statement.py takes create_batch_sql from actors/instance_store.cpp and makes
its array parameters in SQL, so that pgbench can run it with nothing in front of it. Here the
script's output runs once against a database of the schema: it writes what a batch of creates
writes (the instances, their create jobs, their first events and their audit records), so the
bench measures the statement the service runs and not a statement that no longer matches it.

stdlib only; tests/run-all.sh provides the database template.
"""
import os
import subprocess
import sys
import unittest

from cloudbrain_test import Database, psql, require_env


class CreateStatement(unittest.TestCase):
    CREATES = 3

    def test_writes_what_a_batch_of_creates_writes(self):
        db = Database()
        self.addCleanup(db.drop)
        db.query("INSERT INTO tokens (id, description, salt, hash) VALUES "
                 "(7, 'bench', decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))")
        root = require_env("CLOUDBRAIN_SOURCE_DIR")
        script = subprocess.run(
            [sys.executable, os.path.join(root, "bench", "http", "create_statement.py"),
             os.path.join(root, "actors", "instance_store.cpp"), str(self.CREATES), "7"],
            check=True, capture_output=True, text=True, timeout=30).stdout
        self.assertNotIn("$", script)  # every parameter made in SQL
        out = psql(db.url, script)
        self.assertEqual(len(out.split()), self.CREATES, out)  # a row back for each create
        self.assertEqual(db.query(
            "SELECT (SELECT count(*) FROM instances WHERE created_by = 7 AND state = 'creating'), "
            "(SELECT count(*) FROM jobs WHERE kind = 'create_instance' AND state = 'queued'), "
            "(SELECT count(*) FROM instance_events), "
            "(SELECT count(*) FROM audit_events WHERE token_id = 7 AND status = 201)"),
            "|".join([str(self.CREATES)] * 4))


if __name__ == "__main__":
    unittest.main()
