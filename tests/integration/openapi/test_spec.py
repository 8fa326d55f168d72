"""docs/openapi.yaml against the code.

- LintTest: Redocly CLI lints it with docs/redocly.yaml, without an error, a warning or an
  ignored problem; a broken copy does not pass.
- RouteTableTest: the router's real route table (`cloudbrain routes`, the router `serve` hands its
  server) and the file's paths and methods agree both ways, each route's name being its
  operationId; the comparison itself is tested on made-up tables that miss or add a route.
- ConformanceTest: the running service answers as the file says: which operations need a token,
  the status codes, content types, headers and bodies of real answers, validated against the
  file's schemas, and request bodies accepted or refused as the request schemas say.

Needs Debian's python3-yaml and python3-jsonschema (run by /usr/bin/python3), and Node.js with npm
for Redocly CLI, which tests/support/redocly.sh installs into $CLOUDBRAIN_REDOCLY_PREFIX.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import uuid
import warnings

import jsonschema
import yaml

from cloudbrain_test import ServiceTestCase, free_port, require_env, wait_until

SOURCE_DIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
SPEC_PATH = os.path.join(SOURCE_DIR, "docs", "openapi.yaml")
REDOCLY_CONFIG = os.path.join(SOURCE_DIR, "docs", "redocly.yaml")
REDOCLY_SH = os.path.join(SOURCE_DIR, "tests", "support", "redocly.sh")

HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")

# Routes that docs/openapi.yaml describes ahead of the code that serves them, with the route
# name they will have. While the router does not serve one, its absence is tolerated (and said);
# once it does, it is checked like every other route, and the entry should go.
PENDING_ROUTES = {}  # described routes not served yet


def load_spec(path=SPEC_PATH):
    with open(path) as f:
        return yaml.safe_load(f)


def normalise_pattern(pattern):
    """A router pattern ("/instances/:id") in OpenAPI's path syntax ("/instances/{id}")."""
    return "/".join("{" + s[1:] + "}" if s.startswith(":") else s for s in pattern.split("/"))


def parse_route_table(text, admin=None):
    """`cloudbrain routes` output, "METHOD PATTERN NAME [upgrade|admin]" a line, as
    {(METHOD, OpenAPI path): route name}. The keys of routes marked `admin` (served on
    admin-listen only) are added to the set `admin` when one is given."""
    routes = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        if len(words) not in (3, 4) or (len(words) == 4 and words[3] not in ("upgrade", "admin")) \
                or not words[1].startswith("/") or not words[0].isupper():
            raise ValueError(f"line {number} of the route table is not METHOD PATTERN NAME: {line!r}")
        key = (words[0], normalise_pattern(words[1]))
        if key in routes:
            raise ValueError(f"the route table has {key[0]} {key[1]} twice")
        routes[key] = words[2]
        if len(words) == 4 and words[3] == "admin" and admin is not None:
            admin.add(key)
    return routes


def spec_admin_routes(spec):
    """The operations described as served on admin-listen only (x-cloudbrain-listener: admin)."""
    return {(method.upper(), path)
            for path, item in (spec.get("paths") or {}).items()
            for method, operation in item.items()
            if method in HTTP_METHODS and operation.get("x-cloudbrain-listener") == "admin"}


def spec_routes(spec):
    """The operations of an OpenAPI document as {(METHOD, path): operationId}."""
    routes = {}
    for path, item in (spec.get("paths") or {}).items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                routes[(method.upper(), path)] = operation.get("operationId")
    return routes


def compare_routes(served, described, pending=None):
    """Every way in which the router's routes and the described operations differ, as sentences;
    empty when they agree. `pending`: described routes the router may not serve yet."""
    pending = pending or {}
    problems = []
    for key in sorted(served.keys() - described.keys()):
        problems.append(f"the router serves {key[0]} {key[1]} (route '{served[key]}'), "
                        "which docs/openapi.yaml does not describe")
    for key in sorted(described.keys() - served.keys()):
        if key in pending and pending[key] == described[key]:
            continue
        problems.append(f"docs/openapi.yaml describes {key[0]} {key[1]} "
                        f"(operationId '{described[key]}'), which the router does not serve")
    for key in sorted(served.keys() & described.keys()):
        if served[key] != described[key]:
            problems.append(f"{key[0]} {key[1]} is route '{served[key]}' in the router but "
                            f"operationId '{described[key]}' in docs/openapi.yaml")
    return problems


def routes_config(directory):
    """A configuration for `cloudbrain routes`, which opens no database and no socket."""
    path = os.path.join(directory, "routes.ini")
    with open(path, "w") as f:
        f.write("listen = 127.0.0.1:0\n"
                "admin-listen = 127.0.0.1:0\n"
                "database-url = postgresql://nobody@127.0.0.1:1/none\n"
                "[provider.gce]\ntype = fake\nzones = zone-a zone-b\n")
    return path


def served_routes(admin=None):
    """Every route `serve` answers on either listener; those on admin-listen only go to `admin`
    too."""
    binary = require_env("CLOUDBRAIN_BIN")
    with tempfile.TemporaryDirectory(prefix="cloudbrain-routes-") as d:
        out = subprocess.run([binary, "routes", "--config", routes_config(d)],
                             capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"cloudbrain routes failed ({out.returncode}): {out.stderr}")
    return parse_route_table(out.stdout, admin)


# ---- lint --------------------------------------------------------------------------------------

def redocly_lint(spec_path, config_path):
    """Lints with Redocly CLI; returns (totals, problems) from its JSON report."""
    prefix = require_env("CLOUDBRAIN_REDOCLY_PREFIX")
    out = subprocess.run(["bash", REDOCLY_SH, prefix, "lint", "--config", config_path,
                          "--format", "json", spec_path],
                         capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(out.stdout)
    except ValueError:
        raise AssertionError(f"redocly lint gave no JSON report (exit {out.returncode}):\n"
                             f"{out.stdout}\n{out.stderr}")
    return report["totals"], report["problems"], out.returncode


def describe_problems(problems):
    lines = []
    for p in problems:
        where = ", ".join(loc.get("pointer", "?") for loc in p.get("location", []))
        lines.append(f"  {p['severity']} {p['ruleId']}: {p['message']} (at {where})")
    return "\n".join(lines)


class LintTest(unittest.TestCase):
    def test_the_spec_lints_clean(self):
        totals, problems, code = redocly_lint(SPEC_PATH, REDOCLY_CONFIG)
        self.assertEqual((totals["errors"], totals["warnings"], totals["ignored"]), (0, 0, 0),
                         "docs/openapi.yaml has lint problems:\n" + describe_problems(problems))
        self.assertEqual(code, 0)

    def test_a_broken_copy_does_not_lint_clean(self):
        # An example that its schema refuses is an error; an operation without an operationId a
        # warning, which the test above counts as a failure too.
        with open(SPEC_PATH) as f:
            text = f.read()
        broken = text.replace("        state: creating\n", "        state: booting\n", 1)
        broken = broken.replace("      operationId: providers.list\n", "", 1)
        self.assertNotEqual(broken, text)
        with tempfile.TemporaryDirectory(prefix="cloudbrain-lint-") as d:
            shutil.copy(REDOCLY_CONFIG, os.path.join(d, "redocly.yaml"))
            path = os.path.join(d, "openapi.yaml")
            with open(path, "w") as f:
                f.write(broken)
            totals, problems, code = redocly_lint(path, os.path.join(d, "redocly.yaml"))
        rules = {(p["ruleId"], p["severity"]) for p in problems}
        self.assertIn(("no-invalid-media-type-examples", "error"), rules)
        self.assertIn(("operation-operationId", "warn"), rules)
        self.assertGreater(totals["errors"], 0)
        self.assertGreater(totals["warnings"], 0)
        self.assertNotEqual(code, 0)

    def test_the_version_is_the_projects(self):
        with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
            version = re.search(r"project\(cloudbrain VERSION ([0-9.]+)", f.read()).group(1)
        self.assertEqual(load_spec()["info"]["version"], version)

    def test_every_rule_turned_off_says_why(self):
        with open(REDOCLY_CONFIG) as f:
            lines = f.read().splitlines()
        config = yaml.safe_load("\n".join(lines))
        self.assertIn("recommended", config.get("extends", []))
        for i, line in enumerate(lines):
            if re.match(r"^\s+[\w-]+:\s*off\b", line):
                self.assertTrue(i > 0 and lines[i - 1].strip().startswith("#"),
                                f"docs/redocly.yaml turns a rule off without a comment: {line.strip()}")


# ---- the route table ---------------------------------------------------------------------------

class RouteComparisonTest(unittest.TestCase):
    """compare_routes and its inputs, on made-up tables: it must be able to fail."""

    served = {("GET", "/instances/{id}"): "instances.get", ("GET", "/livez"): "livez"}

    def test_agreement_is_no_problem(self):
        self.assertEqual(compare_routes(self.served, dict(self.served)), [])

    def test_a_served_route_missing_from_the_spec(self):
        described = {("GET", "/instances/{id}"): "instances.get"}
        problems = compare_routes(self.served, described)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("the router serves GET /livez", problems[0])

    def test_a_described_route_the_router_does_not_serve(self):
        described = dict(self.served)
        described[("DELETE", "/instances/{id}")] = "instances.delete"
        problems = compare_routes(self.served, described)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("describes DELETE /instances/{id}", problems[0])

    def test_a_name_that_is_not_the_operation_id(self):
        described = dict(self.served)
        described[("GET", "/livez")] = "liveness"
        problems = compare_routes(self.served, described)
        self.assertEqual(len(problems), 1, problems)
        self.assertIn("'livez' in the router but operationId 'liveness'", problems[0])

    def test_a_pending_route_is_tolerated_only_while_unserved_and_only_under_its_name(self):
        described = dict(self.served)
        described[("GET", "/metrics")] = "metrics"
        pending = {("GET", "/metrics"): "metrics"}
        self.assertEqual(compare_routes(self.served, described, pending), [])
        served = dict(self.served)
        served[("GET", "/metrics")] = "prometheus"
        self.assertEqual(len(compare_routes(served, described, pending)), 1)
        described[("GET", "/metrics")] = "scrape"
        self.assertEqual(len(compare_routes(self.served, described, pending)), 1)

    def test_patterns_are_normalised_and_capture_names_count(self):
        admin = set()
        table = parse_route_table("GET /instances/:id instances.get\n"
                                  "GET /drivers/connect drivers.connect upgrade\n"
                                  "GET /nodes nodes.list admin\n", admin)
        self.assertEqual(table, {("GET", "/instances/{id}"): "instances.get",
                                 ("GET", "/drivers/connect"): "drivers.connect",
                                 ("GET", "/nodes"): "nodes.list"})
        self.assertEqual(admin, {("GET", "/nodes")})
        del table[("GET", "/nodes")]
        other_name = {("GET", "/instances/{uuid}"): "instances.get"}
        self.assertEqual(len(compare_routes(table, other_name)), 3)

    def test_a_malformed_table_is_refused(self):
        for text in ("GET instances x\n", "get /a x\n", "GET /a\n", "GET /a x y\n",
                     "GET /a x admin upgrade\n",
                     "GET /a x\nGET /a y\n"):
            with self.subTest(text=text):
                with self.assertRaises(ValueError):
                    parse_route_table(text)

    def test_spec_routes_reads_methods_only(self):
        spec = {"paths": {"/a/{id}": {"parameters": [{"$ref": "#/x"}], "summary": "s",
                                      "get": {"operationId": "a.get"},
                                      "delete": {"operationId": "a.delete"}}}}
        self.assertEqual(spec_routes(spec), {("GET", "/a/{id}"): "a.get",
                                             ("DELETE", "/a/{id}"): "a.delete"})


class RouteTableTest(unittest.TestCase):
    def test_router_and_spec_agree(self):
        admin = set()
        served = served_routes(admin)
        spec = load_spec()
        described = spec_routes(spec)
        problems = compare_routes(served, described, PENDING_ROUTES)
        self.assertEqual(problems, [], "\n".join(problems))
        # What is served on admin-listen only is described so, and nothing else (GET /nodes is
        # served on both: to admin tokens on listen, without a token on admin-listen).
        self.assertEqual(admin, spec_admin_routes(spec))
        self.assertIn(("GET", "/nodes"), served)
        for key, name in PENDING_ROUTES.items():
            if key in served:
                warnings.warn(f"{key[0]} {key[1]} is served now: remove it from PENDING_ROUTES")
            else:
                print(f"note: {key[0]} {key[1]} ('{name}') is described but not served yet")

    def test_the_operations_without_a_token_are_the_probes(self):
        # /livez, /readyz and /metrics need no token (API.md); everything else on `listen`
        # does. What admin-listen alone serves (for operators) needs none there.
        # ConformanceTest checks that the service behaves so.
        admin = spec_admin_routes(load_spec())
        public = {key for key, op in self.operations() if op.get("security") == []}
        self.assertEqual(public - admin, {("GET", "/livez"), ("GET", "/readyz"),
                                          ("GET", "/metrics")})
        self.assertLessEqual(admin, public)

    def operations(self):
        for path, item in load_spec()["paths"].items():
            for method, op in item.items():
                if method in HTTP_METHODS:
                    yield (method.upper(), path), op


# ---- the running service -----------------------------------------------------------------------

def resolve(spec, node):
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


class ConformanceTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "20ms"}}
    settings = {"admin-listen": f"127.0.0.1:{free_port()}"}  # where GET /nodes is served

    @classmethod
    def setUpClass(cls):
        cls.spec = load_spec()
        super().setUpClass()

    def validator(self, schema):
        # The schema sits in the whole document, so that its $refs resolve.
        root = dict(self.spec)
        root.update(schema)
        root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        return jsonschema.Draft202012Validator(
            root, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    def schema_errors(self, schema, value):
        return [e.message for e in self.validator(schema).iter_errors(value)]

    def operation(self, method, template):
        item = self.spec["paths"][template]
        return item[method.lower()]

    def check(self, r, method, template):
        """Checks a response against what the spec says of METHOD TEMPLATE; returns its body."""
        op = self.operation(method, template)
        responses = op["responses"]
        self.assertIn(str(r.status), responses,
                      f"{method} {template} answered {r.status}, which the spec does not list: {r}")
        spec_response = resolve(self.spec, responses[str(r.status)])
        for name, header in (spec_response.get("headers") or {}).items():
            header = resolve(self.spec, header)
            value = r.header(name)
            if header.get("required"):
                self.assertIsNotNone(value, f"{method} {template} {r.status}: no {name} header")
            if value is not None:
                schema = header["schema"]
                typed = int(value) if schema.get("type") == "integer" else value
                self.assertEqual(self.schema_errors(schema, typed), [],
                                 f"{method} {template} {r.status}: header {name}: {value!r}")
        content = spec_response.get("content") or {}
        content_type = r.header("Content-Type")
        self.assertIn(content_type, content,
                      f"{method} {template} {r.status} answered {content_type}: {r}")
        media = content[content_type]
        body = r.json() if "json" in content_type else r.body
        errors = self.schema_errors(media["schema"], body)
        self.assertEqual(errors, [], f"{method} {template} {r.status}: the body does not match "
                                     f"the spec: {errors}\n{r}")
        return body

    def call(self, method, path, template, body=None, **kw):
        r = self.service.request(method, path, body, **kw)
        return r, self.check(r, method, template)

    # ---- security ------------------------------------------------------------------------

    def test_operations_need_a_token_exactly_as_described(self):
        placeholder = {"id": str(uuid.uuid4())}
        for path, item in self.spec["paths"].items():
            for method, op in item.items():
                if method not in HTTP_METHODS:
                    continue
                with self.subTest(operation=f"{method.upper()} {path}"):
                    concrete = path.format(**placeholder)
                    admin = op.get("x-cloudbrain-listener") == "admin"
                    r = self.service.request(method.upper(), concrete, auth=False,
                                             headers={"Content-Type": "application/json"},
                                             raw=b"{}" if method == "post" else None)
                    if admin:
                        # Not on `listen`, with or without a token; on admin-listen, no token.
                        self.assertEqual(r.status, 404, r)
                        self.assertEqual(self.service.request(method.upper(), concrete).status,
                                         404)
                        r = self.service.request(method.upper(), concrete, admin=True)
                    key = (method.upper(), path)
                    if r.status == 404 and key in PENDING_ROUTES \
                            and r.json()["code"] == "not_found":
                        continue  # described ahead of its route (RouteTableTest says so)
                    if op.get("security") == []:
                        self.assertNotEqual(r.status, 401, r)
                        self.check(r, method.upper(), path)
                    else:
                        self.assertEqual(r.status, 401, r)
                        body = self.check(r, method.upper(), path)
                        self.assertEqual(body["code"], "invalid_token")

    def test_both_security_schemes_are_accepted(self):
        schemes = self.spec["components"]["securitySchemes"]
        self.assertEqual(schemes["token"]["name"], "Authorization")
        self.assertEqual(schemes["basic"]["scheme"], "basic")
        token = self.service.token
        basic = "Basic " + base64.b64encode(f"token:{token}".encode()).decode()
        for header in ("token " + token, basic):
            with self.subTest(header=header.split()[0]):
                r, _ = self.call("GET", "/providers", "/providers", auth=False,
                                 headers={"Authorization": header})
                self.assertEqual(r.status, 200, r)

    # ---- instances -----------------------------------------------------------------------

    def test_instance_answers_match_the_spec(self):
        key = "conformance-" + uuid.uuid4().hex
        body = {"provider": "gce", "image": "image-2016-01-01", "instance_type": "standard",
                "public_ssh_key": "ssh-ed25519 AAAA test@example.org", "tags": {"suite": "oas"}}
        r, created = self.call("POST", "/instances", "/instances", body,
                               headers={"Idempotency-Key": key})
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.header("Location").endswith("/instances/" + created["id"]))
        r, again = self.call("POST", "/instances", "/instances", body,
                             headers={"Idempotency-Key": key})
        self.assertEqual((r.status, r.header("Idempotent-Replayed"), again["id"]),
                         (201, "true", created["id"]))
        r, _ = self.call("POST", "/instances", "/instances", dict(body, image="other"),
                         headers={"Idempotency-Key": key})
        self.assertEqual(r.status, 422, r)

        path = "/instances/" + created["id"]
        self.wait_state(created["id"], "running")
        r, running = self.call("GET", path, "/instances/{id}")
        self.assertEqual((r.status, running["state"]), (200, "running"), r)
        self.assertIsNotNone(running["ip_address"])
        r, page = self.call("GET", "/instances?limit=1&tag.suite=oas", "/instances")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(page["instances"]), 1)
        r, deleted = self.call("DELETE", path, "/instances/{id}")
        self.assertEqual((r.status, deleted["state"]), (202, "terminating"), r)

    def test_instance_errors_match_the_spec(self):
        cases = [
            ("GET", "/instances/not-a-uuid", "/instances/{id}", None, {}, 404),
            ("GET", f"/instances/{uuid.uuid4()}", "/instances/{id}", None, {}, 404),
            ("DELETE", f"/instances/{uuid.uuid4()}", "/instances/{id}", None, {}, 404),
            ("GET", "/instances?state=booting", "/instances", None, {}, 422),
            ("GET", "/instances?colour=red", "/instances", None, {}, 422),
            ("GET", "/instances?after=nonsense", "/instances", None, {}, 422),
        ]
        for method, path, template, body, headers, status in cases:
            with self.subTest(request=f"{method} {path}"):
                r, problem = self.call(method, path, template, body, headers=headers)
                self.assertEqual(r.status, status, r)
        r = self.service.request("POST", "/instances", raw=b"provider=gce",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 415, r)
        self.check(r, "POST", "/instances")
        r = self.service.request("POST", "/instances", raw=b'{"provider":',
                                 headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400, r)
        self.check(r, "POST", "/instances")
        r = self.service.request("POST", "/instances", {"provider": "gce", "image": "x"},
                                 headers={"Idempotency-Key": "k" * 256})
        self.assertEqual(r.status, 422, r)
        self.check(r, "POST", "/instances")

    def test_the_instance_request_schema_agrees_with_the_service(self):
        schema = {"$ref": "#/components/schemas/InstanceRequest"}
        base = {"provider": "gce", "image": "image-2016-01-01"}
        valid = [
            base,
            dict(base, instance_type=None, public_ssh_key=None, zone=None, reservation_id=None,
                 tags=None),
            dict(base, instance_type="premium", zone="zone-b", tags={"team": "ci-1", "x": ""}),
            dict(base, image="i" * 1024, public_ssh_key="k" * 16384),
            dict(base, tags={f"t{i}": "v" for i in range(32)}),
        ]
        invalid = [
            {"image": "image-2016-01-01"},
            {"provider": "gce"},
            dict(base, image=""),
            dict(base, image="i" * 1025),
            dict(base, provider="p" * 64),
            dict(base, instance_type="huge"),
            dict(base, instance_type=1),
            dict(base, public_ssh_key="ssh-ed25519 AAAA\nsecond line"),
            dict(base, public_ssh_key="k" * 16385),
            dict(base, zone="z" * 64),
            dict(base, reservation_id="not-a-uuid"),
            dict(base, tags={"Team": "ci"}),
            dict(base, tags={"team": "CI"}),
            dict(base, tags={"cloudbrain-instance": "x"}),
            dict(base, tags={"team": 1}),
            dict(base, tags={f"t{i}": "v" for i in range(33)}),
            dict(base, tags=["team"]),
            dict(base, colour="red"),
            ["provider", "gce"],
        ]
        self.assert_schema_agrees("/instances", schema, valid, invalid)

    # ---- reservations --------------------------------------------------------------------

    def test_reservation_answers_match_the_spec(self):
        run = "oas-" + uuid.uuid4().hex[:8]
        body = {"provider": "gce", "count": 2, "zones": ["zone-b", "zone-a"],
                "duration_minutes": 60, "tags": {"run": run}}
        r, created = self.call("POST", "/reservations", "/reservations", body)
        self.assertEqual((r.status, created["state"]), (201, "pending"), r)
        self.assertTrue(r.header("Location").endswith("/reservations/" + created["id"]))
        path = "/reservations/" + created["id"]

        def active():
            r, reservation = self.call("GET", path, "/reservations/{id}")
            return reservation if reservation["state"] == "active" else None
        self.assertEqual(wait_until(active, 30, what="an active reservation")["zone"], "zone-b")
        r, page = self.call("GET", f"/reservations?tag.run={run}&state=active", "/reservations")
        self.assertEqual([x["id"] for x in page["reservations"]], [created["id"]])
        r, moved = self.call("DELETE", f"/reservations?tag.run={run}", "/reservations")
        self.assertEqual((r.status, [x["state"] for x in moved["reservations"]]),
                         (202, ["cancelling"]), r)
        r, again = self.call("DELETE", path, "/reservations/{id}")
        self.assertEqual(r.status, 202, r)
        for method, url, template, status in [
                ("DELETE", "/reservations", "/reservations", 422),
                ("DELETE", "/reservations?provider=gce", "/reservations", 422),
                ("GET", "/reservations?state=booting", "/reservations", 422),
                ("GET", "/reservations/not-a-uuid", "/reservations/{id}", 404),
                ("DELETE", f"/reservations/{uuid.uuid4()}", "/reservations/{id}", 404)]:
            with self.subTest(request=f"{method} {url}"):
                r, _ = self.call(method, url, template)
                self.assertEqual(r.status, status, r)

    def test_the_reservation_request_schema_agrees_with_the_service(self):
        schema = {"$ref": "#/components/schemas/ReservationRequest"}
        base = {"provider": "gce", "count": 1, "tags": {"suite": "oas-schema"}}
        valid = [
            base,
            dict(base, instance_type=None, zones=None, ends_at=None, duration_minutes=None),
            dict(base, ends_at=None, duration_minutes=30),
            dict(base, instance_type="premium", zones=["zone-a"], duration_minutes=5),
        ]
        invalid = [
            {"count": 1},
            {"provider": "gce"},
            dict(base, count=0),
            dict(base, count=1.5),
            dict(base, count="1"),
            dict(base, instance_type="huge"),
            dict(base, zones=[]),
            dict(base, zones=["zone-a", "zone-a"]),
            dict(base, zones="zone-a"),
            dict(base, duration_minutes=0),
            dict(base, ends_at="2030-01-01T00:00:00Z", duration_minutes=5),
            dict(base, tags={"Run": "x"}),
            dict(base, colour="red"),
        ]
        self.assert_schema_agrees("/reservations", schema, valid, invalid)

    # ---- reservation sets ----------------------------------------------------------------

    def test_reservation_set_answers_match_the_spec(self):
        run = "oas-" + uuid.uuid4().hex[:8]
        body = {"placements": [{"provider": "gce", "count": 1, "zones": ["zone-b"]},
                               {"provider": "gce", "count": 2, "instance_type": "premium"}],
                "duration_minutes": 60, "tags": {"run": run}}
        r, created = self.call("POST", "/reservation-sets", "/reservation-sets", body)
        self.assertEqual((r.status, created["state"]), (201, "pending"), r)
        self.assertTrue(r.header("Location").endswith("/reservation-sets/" + created["id"]))
        path = "/reservation-sets/" + created["id"]

        def active():
            r, reservation_set = self.call("GET", path, "/reservation-sets/{id}")
            return reservation_set if reservation_set["state"] == "active" else None
        got = wait_until(active, 30, what="an active reservation set")
        self.assertEqual([m["state"] for m in got["reservations"]], ["active", "active"])
        r, member = self.call("GET", "/reservations/" + got["reservations"][0]["id"],
                              "/reservations/{id}")
        self.assertEqual(member["set_id"], created["id"])
        r, page = self.call("GET", f"/reservation-sets?tag.run={run}&state=active",
                            "/reservation-sets")
        self.assertEqual([x["id"] for x in page["reservation_sets"]], [created["id"]])
        r, cancelled = self.call("DELETE", path, "/reservation-sets/{id}")
        self.assertEqual((r.status, cancelled["state"]), (202, "cancelling"), r)
        for method, url, template, status in [
                ("GET", "/reservation-sets?state=booting", "/reservation-sets", 422),
                ("GET", "/reservation-sets/not-a-uuid", "/reservation-sets/{id}", 404),
                ("DELETE", f"/reservation-sets/{uuid.uuid4()}", "/reservation-sets/{id}", 404)]:
            with self.subTest(request=f"{method} {url}"):
                r, _ = self.call(method, url, template)
                self.assertEqual(r.status, status, r)

    def test_the_reservation_set_request_schema_agrees_with_the_service(self):
        schema = {"$ref": "#/components/schemas/ReservationSetRequest"}
        one = [{"provider": "gce", "count": 1}]
        base = {"placements": one, "tags": {"suite": "oas-sets"}}
        valid = [
            base,
            dict(base, ends_at=None, duration_minutes=None, on_partial=None, tags=None),
            dict(base, on_partial="keep", duration_minutes=30),
            dict(base, placements=[{"provider": "gce", "count": 1, "instance_type": "premium",
                                    "zones": ["zone-a", "zone-b"]},
                                   {"provider": "gce", "count": 2, "instance_type": None,
                                    "zones": None}]),
        ]
        invalid = [
            {"tags": {"suite": "x"}},
            dict(base, placements=[]),
            dict(base, placements=one * 21),
            dict(base, placements=[{"count": 1}]),
            dict(base, placements=[{"provider": "gce", "count": 0}]),
            dict(base, placements=[{"provider": "gce", "count": 1, "colour": "red"}]),
            dict(base, placements=[{"provider": "gce", "count": 1, "zones": []}]),
            dict(base, placements=[{"provider": "gce", "count": 1, "instance_type": "huge"}]),
            dict(base, on_partial="sometimes"),
            dict(base, duration_minutes=0),
            dict(base, ends_at="2030-01-01T00:00:00Z", duration_minutes=5),
            dict(base, colour="red"),
        ]
        self.assert_schema_agrees("/reservation-sets", schema, valid, invalid)

    # ---- usage -----------------------------------------------------------------------------

    def test_usage_answers_match_the_spec(self):
        run = "oas-" + uuid.uuid4().hex[:8]
        created = self.service.request("POST", "/instances", {"provider": "gce", "image": "i",
                                                              "tags": {"run": run}})
        self.assertEqual(created.status, 201, created)
        self.wait_state(created.json()["id"], "running")
        query = f"/usage?tag.run={run}&group_by=provider,tag.run"
        r, report = self.call("GET", query, "/usage")
        self.assertEqual(r.status, 200, r)
        self.assertEqual([g["group"] for g in report["groups"]], [{"provider": "gce",
                                                                   "tag.run": run}])
        self.assertEqual(report["total"]["instances"], 1)
        r, text = self.call("GET", query, "/usage", headers={"Accept": "text/csv"})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(text.startswith("provider,tag.run,instances,"), text)
        for url, headers, status in [
                ("/usage", {"Accept": "image/png"}, 406),
                ("/usage?group_by=colour", {}, 422),
                ("/usage?from=2030-01-01T00:00:00Z&to=2029-01-01T00:00:00Z", {}, 422),
                ("/usage?colour=red", {}, 422)]:
            with self.subTest(request=url):
                r, _ = self.call("GET", url, "/usage", headers=headers)
                self.assertEqual(r.status, status, r)
        self.service.request("DELETE", "/instances/" + created.json()["id"])

    def assert_schema_agrees(self, path, schema, valid, invalid):
        for body in valid + invalid:
            expected_valid = body in valid
            with self.subTest(body=json.dumps(body)[:120]):
                errors = self.schema_errors(schema, body)
                self.assertEqual(errors == [], expected_valid,
                                 f"the schema {'refuses' if errors else 'accepts'} it: {errors}")
                r, _ = self.call("POST", path, path, body)
                if expected_valid:
                    self.assertEqual(r.status, 201, r)
                else:
                    self.assertIn(r.status, (400, 422), r)

    # ---- providers and probes ------------------------------------------------------------

    def test_providers_and_probes_match_the_spec(self):
        r, listing = self.call("GET", "/providers", "/providers")
        self.assertEqual([p["name"] for p in listing["providers"]], ["gce"])
        wait_until(lambda: self.call("GET", "/providers", "/providers")[1]["providers"][0]
                   ["reconciler"]["leader"], 15, what="a reconciler leader in /providers")
        r, nodes = self.call("GET", "/nodes", "/nodes", admin=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([n["state"] for n in nodes["nodes"]], ["live"])
        for path in ("/livez", "/readyz"):
            with self.subTest(path=path):
                r, body = self.call("GET", path, path, auth=False)
                self.assertEqual(r.status, 200, r)


if __name__ == "__main__":
    unittest.main()
