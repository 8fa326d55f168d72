"""Bad requests: each gets its 4xx with an RFC 9457 problem body (API.md, Conventions) and
stores nothing (no row in instances, jobs or idempotency_keys). Bad or missing tokens: 401 with
`WWW-Authenticate: Basic realm="cloudbrain"` and one and the same body. Tokens never reach the
log; every response carries a sane X-Request-ID."""

import base64
import http.client
import json
import re
import time
import unittest
import uuid

from cloudbrain_test import ServiceTestCase, wait_until

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ONE_MIB = 1024 * 1024


def b64(s):
    return base64.b64encode(s.encode()).decode()


def urlsafe_b64(s):
    return base64.urlsafe_b64encode(s.encode()).decode().rstrip("=")


class BadInputTest(ServiceTestCase):
    providers = {"gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms"},
                 "gce-staging": {"type": "fake", "zones": "us-central1-a"}}

    # ---- helpers ---------------------------------------------------------------------------

    def req(self, method, path, body=None, headers=None, **kw):
        r = self.service.request(method, path, body, headers=headers, **kw)
        rid = r.header("X-Request-ID")
        self.assertIsNotNone(rid, f"no X-Request-ID on {method} {path}: {r}")
        self.assertRegex(rid, SANE_REQUEST_ID)
        return r

    def post_raw(self, data, content_type="application/json", headers=None):
        hdrs = {"Idempotency-Key": "bad-input-" + uuid.uuid4().hex}
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        return self.req("POST", "/instances", headers=hdrs, raw=data)

    def post(self, body, headers=None):
        return self.post_raw(json.dumps(body).encode(), headers=headers)

    def assertNothingStored(self, call):
        before = self.db.count_rows()
        r = call()
        after = self.db.count_rows()
        self.assertEqual(after, before, f"rows were stored by a rejected request ({r})")
        return r

    def assertRejected(self, call, status, code=None, mentions=()):
        r = self.assertNothingStored(call)
        p = self.assertProblem(r, status, code)
        text = p["detail"] + " " + " ".join(str(e) for e in p["errors"])
        for word in mentions:
            self.assertIn(word, text, f"the problem does not name '{word}': {p}")
        return p

    def assertRejected4xx(self, call, statuses):
        r = self.assertNothingStored(call)
        self.assertIn(r.status, statuses, r)
        return self.assertProblem(r, r.status)

    # ---- request bodies --------------------------------------------------------------------

    def test_malformed_json_is_400(self):
        for data in (b'{"provider": "gce",', b'{"provider": "gce", "image": "x"} trailing',
                     b"", b"{'provider': 'gce'}", b'{"provider": "gce" "image": "x"}',
                     b"[" * 100000):
            with self.subTest(data=data[:40]):
                self.assertRejected(lambda: self.post_raw(data), 400)

    def test_invalid_utf8_is_rejected(self):
        self.assertRejected4xx(
            lambda: self.post_raw(b'{"provider": "gce", "image": "\xff\xfe"}'), (400, 422))

    def test_strings_with_nul_are_not_truncated(self):
        # PostgreSQL text cannot hold U+0000: such a request is either refused (4xx, nothing
        # stored) or stored exactly as sent -- never silently cut at the NUL.
        for field, value in (("image", "image-a\u0000-b"), ("public_ssh_key", "ssh-rsa AAA\u0000 x"),
                             ("image", "\u0000")):
            with self.subTest(field=field, value=value):
                body = {"provider": "gce", "image": "image-2016-01-01", field: value}
                before = self.db.count_rows()
                r = self.post(body)
                if r.status == 201:
                    self.assertEqual(r.json()[field], value,
                                     f"'{field}' was stored as {r.json()[field]!r}, "
                                     f"not as sent ({value!r})")
                    got = self.req("GET", f"/instances/{r.json()['id']}")
                    self.assertEqual(got.json()[field], value)
                else:
                    self.assertEqual(self.db.count_rows(), before)
                    self.assertIn(r.status, (400, 422), r)
                    self.assertProblem(r, r.status)

    def test_body_that_is_not_an_object_is_422(self):
        for body in ([], ["gce", "image-2016-01-01"], "gce", 42, None, True):
            with self.subTest(body=body):
                self.assertRejected(lambda: self.post(body), 422)

    def test_wrong_types_are_422_naming_the_field(self):
        good = {"provider": "gce", "image": "image-2016-01-01"}
        cases = [("provider", 42), ("provider", True), ("provider", {}), ("provider", ["gce"]),
                 ("image", 42), ("image", ["x"]), ("image", {"name": "x"}),
                 ("instance_type", 1), ("instance_type", ["standard"]),
                 ("public_ssh_key", 1), ("public_ssh_key", {}),
                 ("zone", 1), ("zone", ["zone-a"]),
                 ("reservation_id", 1), ("reservation_id", {}),
                 ("tags", "team=ci"), ("tags", ["team"]), ("tags", 1)]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                body = dict(good, **{field: value})
                self.assertRejected(lambda: self.post(body), 422, mentions=(field,))

    def test_unknown_field_is_422_naming_it(self):
        body = {"provider": "gce", "image": "image-2016-01-01", "flavour": "large"}
        self.assertRejected(lambda: self.post(body), 422, mentions=("flavour",))
        body = {"provider": "gce", "image": "image-2016-01-01", "Image": "x"}
        self.assertRejected(lambda: self.post(body), 422, mentions=("Image",))

    def test_missing_or_empty_required_fields_are_422(self):
        for body, field in (({"image": "image-2016-01-01"}, "provider"),
                            ({"provider": None, "image": "image-2016-01-01"}, "provider"),
                            ({"provider": "gce"}, "image"),
                            ({"provider": "gce", "image": ""}, "image"),
                            ({"provider": "gce", "image": None}, "image"),
                            ({}, "provider")):
            with self.subTest(body=body):
                self.assertRejected(lambda: self.post(body), 422, mentions=(field,))

    def test_unknown_provider(self):
        for name in ("aws-eu", "GCE", "gce ", "gce-stagin"):
            with self.subTest(provider=name):
                body = {"provider": name, "image": "image-2016-01-01"}
                self.assertRejected(lambda: self.post(body), 422, "unknown_provider",
                                    mentions=(name,))

    def test_bad_instance_type(self):
        for t in ("huge", "Standard", "Default", " "):
            with self.subTest(instance_type=t):
                body = {"provider": "gce", "image": "i", "instance_type": t}
                self.assertRejected(lambda: self.post(body), 422, mentions=("instance_type",))

    def test_worker_vm_types_mean_standard(self):
        # travis-ci/worker sends the job's vm_type ("default", or "" when unset) and always an
        # empty public_ssh_key when it has none; Cloud Brain took them as standard and no key.
        for t in ("default", ""):
            with self.subTest(instance_type=t):
                r = self.post({"provider": "gce", "image": "i", "instance_type": t,
                               "public_ssh_key": ""})
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json()["instance_type"], "standard")
                self.assertIsNone(r.json()["public_ssh_key"])

    def test_zone_not_among_the_providers_zones(self):
        for zone in ("zone-z", "us-central1-a", ""):
            with self.subTest(zone=zone):
                body = {"provider": "gce", "image": "i", "zone": zone}
                self.assertRejected(lambda: self.post(body), 422, mentions=("zone",))
        # ...and a zone of the right provider is accepted.
        r = self.post({"provider": "gce-staging", "image": "i", "zone": "us-central1-a"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["zone"], "us-central1-a")

    def test_bad_reservation_id(self):
        for rid in ("not-a-uuid", "", "0d654ef4-75b9-49a6-9f90", "0d654ef4-75b9-49a6-9f90-f9b1ae3501fcc"):
            with self.subTest(reservation_id=rid):
                body = {"provider": "gce", "image": "i", "reservation_id": rid}
                self.assertRejected(lambda: self.post(body), 422, mentions=("reservation_id",))
        # A well-formed id of a reservation that does not exist: a 4xx, nothing stored.
        body = {"provider": "gce", "image": "i", "reservation_id": str(uuid.uuid4())}
        self.assertRejected4xx(lambda: self.post(body), (404, 422))

    def test_bad_tags(self):
        too_many = {f"k{i}": "v" for i in range(33)}
        for tags, word in (({"team": 1}, "team"), ({"team": None}, "team"),
                           ({"team": ["ci"]}, "team"), ({"Team": "ci"}, "Team"),
                           ({"a b": "ci"}, "a b"), ({"": "ci"}, "tag"), ({"k" * 64: "v"}, "k" * 64),
                           (too_many, "32")):
            with self.subTest(tags=str(tags)[:60]):
                body = {"provider": "gce", "image": "i", "tags": tags}
                self.assertRejected(lambda: self.post(body), 422, mentions=(word,))

    def test_32_tags_are_accepted(self):
        tags = {f"k{i}": f"v{i}" for i in range(32)}
        r = self.post({"provider": "gce", "image": "i", "tags": tags})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(r.json()["tags"], tags)
        got = self.req("GET", f"/instances/{r.json()['id']}")
        self.assertEqual(got.json()["tags"], tags)

    def test_oversized_body_is_413(self):
        key = "ssh-rsa " + "A" * (ONE_MIB + 16)
        data = json.dumps({"provider": "gce", "image": "i", "public_ssh_key": key}).encode()
        self.assertGreater(len(data), ONE_MIB)
        self.assertRejected(lambda: self.post_raw(data), 413)

    def test_oversized_chunked_body_is_413(self):
        def call():
            conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
            try:
                chunk = b" " * 65536
                chunks = [b'{"provider": "gce", "image": "i"'] + [chunk] * 20 + [b"}"]
                conn.request("POST", "/instances", body=iter(chunks), encode_chunked=True,
                             headers={"Authorization": "token " + self.service.token,
                                      "Content-Type": "application/json",
                                      "Transfer-Encoding": "chunked"})
                resp = conn.getresponse()
                from cloudbrain_test import Response
                return Response(resp.status, resp.getheaders(), resp.read().decode())
            finally:
                conn.close()
        self.assertRejected(call, 413)

    def test_content_type_must_be_json(self):
        data = json.dumps({"provider": "gce", "image": "i"}).encode()
        for ct in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                   "multipart/form-data; boundary=x", "application/+json", "text/json",
                   "application/x+json/y"):
            with self.subTest(content_type=ct):
                self.assertRejected(lambda: self.post_raw(data, content_type=ct), 415,
                                    code="unsupported_media_type",
                                    mentions=("application/json", ct))
        # JSON media types, with or without parameters, and no Content-Type at all (API.md: Go's
        # net/http in travis-ci/worker sends none) are read as JSON.
        for ct in ("application/json; charset=utf-8", "Application/JSON", "application/json",
                   "application/merge-patch+json", "application/vnd.cloudbrain+json; v=1", None):
            with self.subTest(content_type=ct):
                r = self.post_raw(data, content_type=ct)
                self.assertEqual(r.status, 201, r)
        # With no Content-Type the body must still be JSON.
        self.assertRejected(lambda: self.post_raw(b"provider=gce&image=i", content_type=None),
                            400)

    def test_bad_idempotency_key(self):
        self.assertRejected(lambda: self.post({"provider": "gce", "image": "i"},
                                              headers={"Idempotency-Key": "k" * 256}), 422)

    # ---- paths and methods -----------------------------------------------------------------

    def test_malformed_id_in_path_is_404(self):
        for path in ("/instances/not-a-uuid", "/instances/%zz", "/instances/123",
                     "/instances/0d654ef4-75b9-49a6-9f90-f9b1ae3501fcX",
                     "/instances/0d654ef4-75b9-49a6-9f90-f9b1ae3501f", "/instances/%00",
                     "/instances/'%20OR%201=1--"):
            for method in ("GET", "DELETE"):
                with self.subTest(method=method, path=path):
                    self.assertRejected(lambda: self.req(method, path), 404)

    def test_unknown_id_is_404(self):
        unknown = str(uuid.uuid4())
        for method in ("GET", "DELETE"):
            with self.subTest(method=method):
                p = self.assertRejected(lambda: self.req(method, f"/instances/{unknown}"), 404,
                                        "instance_not_found")
                self.assertIn(unknown, p["detail"])

    def test_unknown_route_is_404(self):
        for path in ("/nope", "/instances/" + str(uuid.uuid4()) + "/extra", "/instance",
                     "/v1/instances"):
            with self.subTest(path=path):
                self.assertRejected(lambda: self.req("GET", path), 404)

    def test_wrong_method_is_405_with_allow(self):
        some_id = str(uuid.uuid4())
        for method, path, allowed in (("PUT", "/instances", {"GET", "POST"}),
                                      ("DELETE", "/instances", {"GET", "POST"}),
                                      ("PATCH", f"/instances/{some_id}", {"GET", "DELETE"}),
                                      ("POST", f"/instances/{some_id}", {"GET", "DELETE"}),
                                      ("POST", "/livez", {"GET"})):
            with self.subTest(method=method, path=path):
                r = self.assertNothingStored(lambda: self.req(method, path, body={}))
                self.assertProblem(r, 405)
                allow = r.header("Allow")
                self.assertIsNotNone(allow, "405 without Allow")
                methods = {m.strip() for m in allow.split(",")}
                self.assertTrue(allowed <= methods, f"Allow: {allow}, expected {allowed}")
                self.assertNotIn(method, methods)

    def test_bad_list_parameters_are_422(self):
        cursor_like = [
            "garbage", "not%20base64!!", "%2B%2F%3D%3D",
            urlsafe_b64("2020-01-01T00:00:00Z"),
            urlsafe_b64("2020-01-01T00:00:00Z|not-a-uuid"),
            urlsafe_b64("yesterday|" + str(uuid.uuid4())),
            urlsafe_b64("2020-13-45T99:00:00Z|" + str(uuid.uuid4())),
        ]
        queries = ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=", "limit=1.5",
                   "limit=99999999999999999999999", "state=bogus", "state=RUNNING", "state=",
                   "frobnicate=1", "tags.team=ci", "tag=ci"]
        queries += ["after=" + c for c in cursor_like]
        for q in queries:
            with self.subTest(query=q):
                self.assertRejected(lambda: self.req("GET", "/instances?" + q), 422)

    # ---- tokens ----------------------------------------------------------------------------

    def test_bad_tokens_get_the_same_401(self):
        good = self.service.create_token("good")
        token_id, secret = good.split("-", 1)
        revoked = self.service.create_token("to be revoked")
        self.service.cli("token", "revoke", revoked.split("-", 1)[0])
        wrong_secret = "0" * 32 if secret != "0" * 32 else "1" * 32
        headers = {
            "missing": None,
            "bearer": "Bearer x",
            "bearer with the token": "Bearer " + good,
            "empty token": "token ",
            "scheme only": "token",
            "non-numeric id": "token abc-" + secret,
            "negative id": "token -1-" + secret,
            "unknown id": "token 987654321-" + secret,
            "wrong secret": f"token {token_id}-{wrong_secret}",
            "revoked": "token " + revoked,
            "malformed hex": f"token {token_id}-{'z' * 32}",
            "uppercase hex": f"token {token_id}-{secret.upper()}" if secret != secret.upper()
                             else f"token {token_id}-{'G' * 32}",
            "short hex": f"token {token_id}-{secret[:-1]}",
            "long hex": f"token {token_id}-{secret}0",
            "no dash": f"token {token_id}{secret}",
            "basic wrong user": "Basic " + b64("user:" + good),
            "basic wrong password": "Basic " + b64(f"token:{token_id}-{wrong_secret}"),
            "basic no colon": "Basic " + b64("token" + good),
            "basic not base64": "Basic !!!notbase64",
        }
        bodies = {}
        for name, value in headers.items():
            for method, path, body in (("GET", "/instances", None),
                                       ("GET", f"/instances/{uuid.uuid4()}", None),
                                       ("POST", "/instances", {"provider": "gce", "image": "i"}),
                                       ("GET", "/providers", None)):
                with self.subTest(case=name, method=method, path=path):
                    hdrs = {"Authorization": value} if value is not None else {}
                    r = self.assertNothingStored(
                        lambda: self.req(method, path, body, headers=hdrs, auth=False))
                    self.assertProblem(r, 401, "invalid_token")
                    self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="cloudbrain"', r)
                    bodies.setdefault(r.body, []).append(f"{name}: {method} {path}")
        self.assertEqual(len(bodies), 1, f"401 bodies differ: {json.dumps(bodies, indent=1)}")
        # And the good token, both ways, still works.
        self.assertEqual(self.req("GET", "/instances", token=good).status, 200)
        r = self.req("GET", "/instances", auth=False,
                     headers={"Authorization": "Basic " + b64("token:" + good)})
        self.assertEqual(r.status, 200, r)

    def test_401_time_profile_does_not_tell_whether_the_id_exists(self):
        # API.md: the same time profile whether the id exists or not. Interleaved, so that the
        # load on the machine hits every case alike; a generous factor against noise.
        good = self.service.create_token("timing")
        token_id, secret = good.split("-", 1)
        revoked = self.service.create_token("timing, revoked")
        self.service.cli("token", "revoke", revoked.split("-", 1)[0])
        cases = {"unknown id": f"token {int(token_id) + 100000}-{secret}",
                 "wrong secret": f"token {token_id}-{'0' * 32 if secret != '0' * 32 else '1' * 32}",
                 "revoked": "token " + revoked}
        took = {k: [] for k in cases}
        for _ in range(12):
            for name, value in cases.items():
                t0 = time.perf_counter()
                r = self.service.request("GET", "/instances", auth=False,
                                         headers={"Authorization": value})
                took[name].append(time.perf_counter() - t0)
                self.assertEqual(r.status, 401, r)
        medians = {k: sorted(v)[len(v) // 2] for k, v in took.items()}
        fastest, slowest = min(medians.values()), max(medians.values())
        self.assertLess(slowest / fastest, 2.5, f"median seconds per case: {medians}")

    def test_health_endpoints_need_no_token(self):
        for path in ("/livez", "/readyz"):
            with self.subTest(path=path):
                r = self.req("GET", path, auth=False)
                self.assertEqual(r.status, 200, r)

    # ---- logs and request ids --------------------------------------------------------------

    def test_tokens_never_reach_the_log(self):
        token = self.service.create_token("logged?")
        token_id, secret = token.split("-", 1)
        basic = b64("token:" + token)
        marks = []
        for hdr in ("token " + token, "Basic " + basic, f"token {token_id}-{'0' * 32}",
                    "Basic " + b64("nobody:" + token)):
            rid = "log-check-" + uuid.uuid4().hex
            marks.append(rid)
            self.req("GET", "/instances", auth=False,
                     headers={"Authorization": hdr, "X-Request-ID": rid})
            rid2 = "log-check-" + uuid.uuid4().hex
            marks.append(rid2)
            self.req("POST", "/instances", {"provider": "gce", "image": "i", "frob": 1},
                     auth=False, headers={"Authorization": hdr, "X-Request-ID": rid2})
        # The log may be written asynchronously: wait until every request has its line.
        wait_until(lambda: all(any(m in line for line in self.service.log_lines())
                               for m in marks), 10, what="a log line for each request")
        for line in self.service.log_lines():
            for needle in (secret, basic, token):
                self.assertNotIn(needle, line, "a token reached the log")
            self.assertNotIn(self.service.token.split("-", 1)[1], line)

    def test_request_id_echoed_or_replaced(self):
        sane = "client-req_1.2:3-" + uuid.uuid4().hex
        for method, path, auth in (("GET", "/instances", True), ("GET", "/livez", False),
                                   ("GET", "/nope", True), ("GET", "/instances", False),
                                   ("GET", "/instances?limit=0", True)):
            with self.subTest(path=path, auth=auth):
                r = self.req(method, path, headers={"X-Request-ID": sane}, auth=auth)
                self.assertEqual(r.header("X-Request-ID"), sane)
        for insane in ("has spaces in it", "x" * 129, "semi;colon", "quote\"d", "slash/ed",
                       "tab\there", "\u00e9t\u00e9".encode().decode("latin-1")):
            with self.subTest(insane=insane):
                r = self.req("GET", "/instances", headers={"X-Request-ID": insane})
                self.assertEqual(r.status, 200, r)
                self.assertNotEqual(r.header("X-Request-ID"), insane)
        # Fresh ids are distinct.
        ids = {self.req("GET", "/livez", auth=False).header("X-Request-ID") for _ in range(20)}
        self.assertEqual(len(ids), 20)
        # The id is in the log line about the request.
        wait_until(lambda: any(sane in line for line in self.service.log_lines()), 10,
                   what="the client's request id in the log")

    def test_request_id_on_a_rejected_http_request(self):
        # A request the server cannot even parse still gets an id (and a problem body).
        import socket
        with socket.create_connection(("127.0.0.1", self.service.port), timeout=10) as s:
            s.sendall(b"GET /instances HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 10
            while b"\r\n\r\n" not in data and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
        self.assertRegex(head, r"^HTTP/1\.1 400 ")
        self.assertRegex(head, r"(?im)^x-request-id: [A-Za-z0-9._:-]+\r?$")


if __name__ == "__main__":
    unittest.main()
