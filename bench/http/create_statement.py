"""Prints a pgbench script that runs the service's own create statement, with nothing in front.

    python3 create_statement.py SOURCE CREATES TOKEN_ID > create_statement.sql

SOURCE is actors/instance_store.cpp; its create_batch_sql is the statement a batch of creates
runs (the instances, their jobs, their first events and their audit records, in one
transaction). Its array parameters are made here in SQL, CREATES elements each, as the bench's
POSTs send them (no Idempotency-Key); the instances are made by token TOKEN_ID. A parameter this
script does not know makes it fail rather than measure something else.
"""
import re
import sys

source, creates, token_id = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(source) as f:
    found = re.search(r'const char\* const create_batch_sql = R"\((.*?)\)";', f.read(), re.S)
if not found:
    sys.exit(f"{source}: no create_batch_sql")
sql = found.group(1)

arrays = {
    1: ("gen_random_uuid()", "uuid"),  # id
    2: ("'gce'", "text"),  # provider
    3: ("'image-2016-01-01'", "text"),  # image
    4: ("'standard'", "text"),  # instance_type
    5: ("'ssh-rsa AAAA'", "text"),  # public_ssh_key
    6: ("NULL", "text"),  # zone
    7: ("'{}'", "jsonb"),  # tags
    8: (str(token_id), "bigint"),  # created_by
    9: ("NULL", "text"),  # Idempotency-Key
    10: ("NULL", "text"),  # request hash
    12: ("'bench-' || g", "text"),  # request id
    13: ("'127.0.0.1'", "text"),  # address
    14: ("'instances.create'", "text"),  # action
    15: ("'POST'", "text"),  # method
}
for n, (value, kind) in arrays.items():
    param = f"${n}::{kind}[]"
    if param not in sql:
        sys.exit(f"create_batch_sql has no {param} any more: update {sys.argv[0]}")
    sql = sql.replace(param, f"ARRAY(SELECT {value}::{kind} FROM generate_series(1, {creates}) g)")
sql = sql.replace("$11::int", "5::int")  # max_attempts
if re.search(r"\$\d", sql):
    sys.exit(f"create_batch_sql has parameters {sys.argv[0]} does not know: update it")
# pgbench takes :name for a variable: the colons of the time format are spelled out.
sql = sql.replace(":MI:SS", "' || chr(58) || 'MI' || chr(58) || 'SS")
if re.search(r"(?<!:):[A-Za-z]", sql):
    sys.exit(f"create_batch_sql has a :name pgbench would read: update {sys.argv[0]}")
print(sql.strip() + ";")
