"""The hub at /drivers/connect, spoken to message by message: tokens and roles, registration,
a driver that can never see another provider's configuration or secret, malformed, oversized,
out-of-order and unknown messages (a protocol error, the connection closed, the service
unharmed), operations sent again on the next connection after a drop, several connections
sharing the load up to each one's max_in_flight, and heartbeats. Every message the tests see is
checked against the protocol's JSON Schemas."""

import asyncio
import base64
import json
import os
import signal
import time
import unittest

import websockets

from cloudbrain_test import ServiceTestCase, wait_until
from drivers_support import RawDriver, Schemas, provider_state, run, write_token_file

SECRET_A = "alpha-s3cret-value"
SECRET_B = "beta-s3cret-value"


class HubTestCase(ServiceTestCase):
    # Heartbeats every 2 s (a connection silent for 6 s is dropped); no reconciler or janitor
    # pass to send operations the tests do not expect.
    settings = {"driver-heartbeat": "2s", "reconcile-interval": "10m", "janitor-interval": "10m"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.schemas = Schemas()
        cls.raw = []

    def driver(self, token=None):
        d = RawDriver(self.service, token if token is not None else self.driver_token())
        self.raw.append(d)
        return d

    def driver_token(self, name="driver"):
        if not hasattr(type(self), "_driver_token"):
            type(self)._driver_token = write_token_file(self.service, name)[1]
        return type(self)._driver_token

    def tearDown(self):
        for d in self.raw:
            for direction, message in d.seen:
                with self.subTest(message=json.dumps(message)[:200]):
                    self.assertEqual(self.schemas.errors(message), [])
        self.raw.clear()


class Authentication(HubTestCase):
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1"},
                 "gce": {"type": "fake", "zones": "zone-a"}}

    def test_connect_needs_a_driver_token(self):
        r = self.service.request("GET", "/drivers/connect", auth=False)
        self.assertProblem(r, 401, "invalid_token")
        self.assertEqual(r.header("WWW-Authenticate"), 'Basic realm="cloudbrain"')
        r = self.service.request("GET", "/drivers/connect")  # a client token
        p = self.assertProblem(r, 403, "role_not_allowed")
        self.assertIn("client role", p["detail"])
        r = self.service.request("GET", "/drivers/connect", token=self.driver_token())
        self.assertProblem(r, 426, "upgrade_required")

        async def handshake(token):
            try:
                await self.driver(token).connect()
            except websockets.exceptions.InvalidStatusCode as e:
                return e.status_code
            return 101
        self.assertEqual(run(handshake("")), 401)
        self.assertEqual(run(handshake(self.service.token)), 403)
        self.assertEqual(run(handshake("1-" + "0" * 32)), 401)
        self.assertEqual(run(handshake(self.driver_token())), 101)

    def test_a_driver_token_is_refused_by_the_rest_of_the_api(self):
        token = self.driver_token()
        for method, path, body in (("GET", "/instances", None),
                                   ("POST", "/instances", {"provider": "gce", "image": "x"}),
                                   ("GET", "/providers", None),
                                   ("POST", "/reservations", {"provider": "gce", "count": 1})):
            with self.subTest(request=f"{method} {path}"):
                r = self.service.request(method, path, body, token=token)
                p = self.assertProblem(r, 403, "role_not_allowed")
                self.assertIn("driver role", p["detail"])
        basic = "Basic " + base64.b64encode(f"token:{token}".encode()).decode()
        r = self.service.request("GET", "/instances", auth=False, headers={"Authorization": basic})
        self.assertProblem(r, 403, "role_not_allowed")
        self.assertEqual(self.db.count_rows("instances")["instances"], 0)
        # The probes need no token at all.
        self.assertEqual(self.service.request("GET", "/livez", token=token).status, 200)

    def test_token_list_shows_roles(self):
        self.driver_token()
        listed = self.service.cli("token", "list").stdout.splitlines()
        self.assertEqual(listed[0].split("\t"), ["ID", "CREATED", "REVOKED", "ROLE", "SCOPE",
                                                 "DESCRIPTION"])
        roles = {line.split("\t")[3] for line in listed[1:]}
        self.assertIn("driver", roles)
        bad = self.service.cli("token", "create", "--role", "root", "x", check=False)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--role client|driver|admin", bad.stderr)


class Registration(HubTestCase):
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1 rack-2"}}

    def test_accepted_with_the_sections_it_serves(self):
        async def go():
            d = await self.driver().connect()
            answer = await d.register("pool", max_in_flight=3)
            await d.close()
            return answer
        answer = run(go())
        self.assertEqual(answer["type"], "registered", answer)
        self.assertEqual(answer["protocol_version"], 1)
        self.assertEqual([(p["name"], p["zones"]) for p in answer["providers"]],
                         [("lab", ["rack-1", "rack-2"])])
        self.assertEqual(answer["heartbeat_interval_ms"], 2000)
        self.assertEqual(answer["heartbeat_timeout_ms"], 6000)

    def test_refused_with_a_reason(self):
        async def attempt(message):
            d = await self.driver().connect()
            await d.send(message, valid=message is base)
            answer = await d.recv()
            return answer, await d.closed()
        base = {"type": "register", "driver": "pool", "protocol_version": 1,
                "capabilities": ["instances"], "max_in_flight": 1}
        for change, reason in (({"driver": "vsphere"}, "unknown_driver"),
                               ({"protocol_version": 2}, "unsupported_version"),
                               ({"driver": "Not A Name"}, "invalid_registration"),
                               ({"capabilities": ["teleport"]}, "invalid_registration"),
                               ({"max_in_flight": 0}, "invalid_registration")):
            with self.subTest(change=change):
                answer, code = run(attempt(dict(base, **change)))
                self.assertEqual((answer["type"], answer["reason"]), ("refused", reason), answer)
                self.assertEqual(answer["supported_versions"], [1])
                self.assertEqual(code, 1008)
        self.assertEqual(provider_state(self.service, "lab")["state"], "disconnected")


class SecretIsolation(HubTestCase):
    providers = {"lab-a": {"type": "external", "driver": "alpha", "zones": "a1",
                           "site": "first", "secret.password": SECRET_A},
                 "lab-b": {"type": "external", "driver": "beta", "zones": "b1",
                           "site": "second", "secret.password": SECRET_B}}

    def test_a_driver_sees_only_its_own_providers_settings(self):
        async def go():
            d = await self.driver().connect()
            registered = await d.register("alpha")
            answers = {}
            for kind, provider in (("get_config", "lab-a"), ("get_secret", "lab-a"),
                                   ("get_config", "lab-b"), ("get_secret", "lab-b"),
                                   ("get_secret", "lab-z")):
                await d.send({"type": kind, "id": f"{kind}-{provider}", "provider": provider})
                answers[(kind, provider)] = await d.recv()
            await d.close()
            return registered, answers
        registered, answers = run(go())
        self.assertEqual([p["name"] for p in registered["providers"]], ["lab-a"])
        config = answers[("get_config", "lab-a")]
        self.assertEqual(config["type"], "config")
        self.assertEqual(config["config"], {"zones": ["a1"], "site": "first"})
        self.assertEqual(config["version"], registered["providers"][0]["config_version"])
        secret = answers[("get_secret", "lab-a")]
        self.assertEqual((secret["type"], secret["secret"]),
                         ("secret", {"secret.password": SECRET_A}))
        self.assertEqual(secret["version"], registered["providers"][0]["secret_version"])
        other = [answers[k] for k in (("get_config", "lab-b"), ("get_secret", "lab-b"),
                                      ("get_secret", "lab-z"))]
        for a in other:
            self.assertEqual((a["type"], a["error"]["kind"]), ("error", "not_found"), a)
            self.assertNotIn(SECRET_B, json.dumps(a))
        # Another provider and no provider at all get the same answer.
        self.assertEqual(other[1]["error"]["message"], other[2]["error"]["message"])
        log = "\n".join(self.service.log_lines())
        self.assertNotIn(SECRET_A, log)
        self.assertNotIn(SECRET_B, log)


class TokenBinding(HubTestCase):
    """driver-tokens: a section that names driver tokens is served only by connections made
    with one of them; to any other driver token it is as if no section named the driver."""
    providers = {"open": {"type": "external", "driver": "gamma", "zones": "o1",
                          "secret.password": SECRET_A}}

    def test_only_the_named_tokens_serve_a_bound_section(self):
        _, mine = write_token_file(self.service, "bound driver")
        _, other = write_token_file(self.service, "another driver")
        # New sections are served on reload: one bound to `mine`, for the same driver name as
        # `open`, and one of another driver name bound to `mine` alone.
        self.service.providers = dict(self.providers, **{
            "bound": {"type": "external", "driver": "gamma", "zones": "b1",
                      "driver-tokens": mine.split("-")[0], "secret.password": SECRET_B},
            "solo": {"type": "external", "driver": "delta", "zones": "s1",
                     "driver-tokens": "%s, 999999" % mine.split("-")[0]}})
        self.service.write_config()
        self.service.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: {"bound", "solo"} <= {
            p["name"] for p in self.service.request("GET", "/providers").json()["providers"]},
            30, what="the bound sections to be served after the reload")

        async def go(token, driver, asks=()):
            d = await self.driver(token).connect()
            registered = await d.register(driver)
            answers = {}
            if registered["type"] == "registered":
                for provider in asks:
                    await d.send({"type": "get_secret", "id": "s-" + provider,
                                  "provider": provider})
                    answers[provider] = await d.recv()
            await d.close()
            return registered, answers

        registered, answers = run(go(other, "gamma", ("open", "bound")))
        self.assertEqual([p["name"] for p in registered["providers"]], ["open"])
        self.assertEqual(answers["open"]["secret"], {"secret.password": SECRET_A})
        self.assertEqual((answers["bound"]["type"], answers["bound"]["error"]["kind"]),
                         ("error", "not_found"))
        self.assertNotIn(SECRET_B, json.dumps(answers["bound"]))
        registered, answers = run(go(mine, "gamma", ("bound",)))
        self.assertEqual(sorted(p["name"] for p in registered["providers"]), ["bound", "open"])
        self.assertEqual(answers["bound"]["secret"], {"secret.password": SECRET_B})
        # A driver name whose every section is bound to other tokens: refused as unknown.
        registered, _ = run(go(other, "delta"))
        self.assertEqual((registered["type"], registered["reason"]),
                         ("refused", "unknown_driver"), registered)
        registered, _ = run(go(mine, "delta"))
        self.assertEqual([p["name"] for p in registered["providers"]], ["solo"])

    def test_a_bad_token_list_is_refused_clearly(self):
        out = self.service.cli("serve", "--check-config", "--config", self.bad_config(),
                               check=False)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("'driver-tokens' must be token ids", out.stderr + out.stdout)

    def bad_config(self):
        path = os.path.join(self.service.workdir, "bad.conf")
        with open(path, "w") as f:
            f.write("database-url = postgresql://127.0.0.1:1/none\n"
                    "[provider.x]\ntype = external\ndriver = gamma\nzones = z1\n"
                    "driver-tokens = 7 seven\n")
        return path


class ProtocolErrors(HubTestCase):
    providers = {"lab": {"type": "external", "driver": "pool", "zones": "rack-1"},
                 "gce": {"type": "fake", "zones": "zone-a"}}

    def misbehave(self, before_register, message, registered=True):
        async def go():
            d = await self.driver().connect()
            if registered:
                answer = await d.register("pool")
                self.assertEqual(answer["type"], "registered")
            if isinstance(message, bytes) or isinstance(message, str):
                await d.ws.send(message)
            else:
                await d.send(message, valid=False)
            reply = await d.recv(skip_pings=True)
            code = await d.closed()
            return reply, code
        return run(go())

    def assertProtocolError(self, message, registered=True, mentions=None):
        reply, code = self.misbehave(False, message, registered)
        self.assertIsNotNone(reply, "no answer before the close")
        self.assertEqual(reply["type"], "protocol_error", reply)
        if mentions:
            self.assertIn(mentions, reply["message"])
        self.assertEqual(code, 1002)
        return reply

    def test_malformed_messages(self):
        self.assertProtocolError("{not json", mentions="not JSON")
        self.assertProtocolError("[1, 2, 3]", mentions="JSON object")
        self.assertProtocolError('{"id": "x"}', mentions="'type'")
        self.assertProtocolError({"type": "get_secret", "id": "1", "provider": 7},
                                 mentions="'provider'")
        self.assertProtocolError({"type": "error", "id": "op-1"}, mentions="'error'")
        self.assertProtocolError(b'\x00\x01binary', mentions="binary")

    def test_unknown_messages(self):
        self.assertProtocolError({"type": "teleport", "id": "1"}, mentions="unknown message type")
        # A hub's message is not a driver's to send.
        self.assertProtocolError({"type": "config", "id": "1", "provider": "lab", "version": "v",
                                  "config": {}}, mentions="unknown message type")

    def test_out_of_order_messages(self):
        reply = self.assertProtocolError({"type": "ping", "id": "early"}, registered=False,
                                         mentions="must be register")
        self.assertProtocolError({"type": "register", "driver": "pool", "protocol_version": 1,
                                  "capabilities": [], "max_in_flight": 1},
                                 mentions="register comes once")
        self.assertProtocolError({"type": "result", "id": "op-99999999"},
                                 mentions="never sent")

    def test_an_oversized_message_closes_with_1009(self):
        async def go():
            d = await self.driver().connect()
            await d.register("pool")
            try:
                await d.ws.send(json.dumps({"type": "ping", "id": "x",
                                            "pad": "x" * (2 * 1024 * 1024)}))
            except websockets.exceptions.ConnectionClosed:
                # The hub may refuse the message before all of it has left this side.
                return d.ws.close_code
            return await d.closed()
        self.assertEqual(run(go()), 1009)

    def test_the_service_is_unharmed(self):
        self.test_malformed_messages()
        self.test_an_oversized_message_closes_with_1009()
        self.assertEqual(self.service.request("GET", "/readyz", auth=False).status, 200)
        inst = self.create(provider="gce")
        self.wait_state(inst["id"], "running", timeout=20)
        self.assertIsNone(self.service.proc.poll())
        # A well-behaved driver still registers, and its provider is served.
        async def go():
            d = await self.driver().connect()
            return await d.register("pool")
        self.assertEqual(run(go())["type"], "registered")


class OperationsAcrossConnections(HubTestCase):
    providers = {"lab": {"type": "external", "driver": "mini", "zones": "z1",
                         "rate-limit": "1000", "max-in-flight": "20"}}

    @staticmethod
    def machine_for(op, address):
        spec = op["spec"]
        return {"name": spec["name"], "upstream_id": "m-" + address, "zone": spec["zone"],
                "status": "running", "ip_address": address, "labels": spec["labels"],
                "created_at": "2026-01-01T00:00:00Z"}

    async def next_operation(self, d, timeout=15):
        """The next operation, answering settings requests on the way."""
        while True:
            m = await d.recv(timeout)
            if m is None or m["type"] in ("create", "get", "delete", "list"):
                return m

    async def fetch_settings(self, d):
        await d.send({"type": "get_config", "id": "c", "provider": "lab"})
        await d.send({"type": "get_secret", "id": "s", "provider": "lab"})
        got = {(await d.recv())["type"], (await d.recv())["type"]}
        self.assertEqual(got, {"config", "secret"})

    def test_an_operation_in_flight_is_sent_again_on_the_next_connection(self):
        async def go():
            first = await self.driver().connect()
            self.assertEqual((await first.register("mini", max_in_flight=1))["type"], "registered")
            inst = self.create(provider="lab")
            op = await self.next_operation(first)
            self.assertEqual(op["type"], "create")
            await first.ws.close()  # gone without an answer
            second = await self.driver().connect()
            await second.register("mini", max_in_flight=4)
            again = await self.next_operation(second)
            await self.fetch_settings(second)
            await second.send({"type": "result", "id": again["id"],
                               "machine": self.machine_for(again, "192.0.2.7")})
            return inst, op, again, second
        inst, op, again, second = run(go())
        self.assertEqual(again["type"], "create")
        for field in ("id", "idempotency_key", "spec", "provider", "config_version"):
            self.assertEqual(again[field], op[field], field)
        self.assertLessEqual(again["deadline_ms"], op["deadline_ms"])
        running = self.wait_state(inst["id"], "running", timeout=20)
        self.assertEqual(running["ip_address"], "192.0.2.7")
        self.assertTrue(any("operation sent again after its connection dropped" in l
                            for l in self.service.log_lines()))

    def test_connections_share_the_load_up_to_their_max_in_flight(self):
        async def go():
            a = await self.driver().connect()
            b = await self.driver().connect()
            await a.register("mini", max_in_flight=2)
            await b.register("mini", max_in_flight=2)
            capacity = provider_state(self.service, "lab")["details"]["capacity"]
            made = [self.create(provider="lab") for _ in range(6)]
            held = {"a": [], "b": []}
            # Each connection gets at most its max_in_flight while nothing is answered.
            for name, d in (("a", a), ("b", b)):
                while True:
                    op = await self.next_operation(d, timeout=3)
                    if op is None:
                        break
                    held[name].append(op)
            counts = (len(held["a"]), len(held["b"]))
            # Answering frees room: the rest arrive, never more than two at a time.
            address = 10
            pending = {"a": list(held["a"]), "b": list(held["b"])}
            done = 0
            deadline = time.monotonic() + 40
            while done < 6 and time.monotonic() < deadline:
                for name, d in (("a", a), ("b", b)):
                    self.assertLessEqual(len(pending[name]), 2)
                    if pending[name]:
                        op = pending[name].pop(0)
                        if op["type"] == "create":
                            address += 1
                            await d.send({"type": "result", "id": op["id"],
                                          "machine": self.machine_for(op, f"192.0.2.{address}")})
                            done += 1
                        else:
                            await d.send({"type": "error", "id": op["id"],
                                          "error": {"kind": "transient", "message": "busy"}})
                    more = await self.next_operation(d, timeout=0.3)
                    if more:
                        pending[name].append(more)
            return made, counts, capacity
        made, counts, capacity = run(go())
        self.assertEqual(capacity, 4, "the provider's capacity is its connections' together")
        self.assertEqual(counts, (2, 2), "each connection holds its max_in_flight, no more")
        for inst in made:
            self.wait_state(inst["id"], "running", timeout=20)

    def test_a_silent_driver_is_dropped(self):
        async def go():
            d = await self.driver().connect()
            await d.register("mini", max_in_flight=5)
            await asyncio.sleep(0.2)
            connected = provider_state(self.service, "lab")["details"]["connections"]
            started = time.monotonic()
            # Reads nothing and answers nothing: three 2 s heartbeats later it is gone.
            await asyncio.sleep(7.5)
            code = await d.closed(timeout=2)
            return connected, code, time.monotonic() - started
        connected, code, took = run(go())
        self.assertGreaterEqual(connected, 1)
        self.assertIsNotNone(code, f"still open {took:.1f} s after the driver fell silent")
        wait_until(lambda: provider_state(self.service, "lab")["details"]["connections"] == 0, 5,
                   what="the silent connection to be dropped")
        self.assertTrue(any("heartbeat timeout" in l for l in self.service.log_lines()))


if __name__ == "__main__":
    unittest.main()
