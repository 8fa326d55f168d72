"""Support for the out-of-tree driver tests: the example drivers as processes, a raw protocol
client that plays a driver message by message, and the protocol's JSON Schemas
(docs/driver-protocol/) to check every message a test sees against.

Needs /usr/bin/python3 (Debian's python3-websockets and python3-jsonschema) and, from CTest,
CLOUDBRAIN_POOL_DRIVER, CLOUDBRAIN_DRIVER_CONFORMANCE and CLOUDBRAIN_SOURCE_DIR; a test fails
when one is missing.
"""

import asyncio
import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import jsonschema
import websockets

from cloudbrain_test import require_env, wait_until

SOURCE_DIR = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
HERE = os.path.dirname(os.path.abspath(__file__))
EXEC_DRIVER = os.path.join(SOURCE_DIR, "deploy", "drivers", "cloudbrain-exec-driver")
LAB_HOOK = os.path.join(HERE, "lab_hook.py")
DOUBLING_DRIVER = os.path.join(HERE, "doubling_driver.py")
SCHEMA_DIR = os.path.join(SOURCE_DIR, "docs", "driver-protocol")
LAB_PASSWORD = "open-sesame"


def pool_driver_binary():
    return require_env("CLOUDBRAIN_POOL_DRIVER")


def conformance_binary():
    return require_env("CLOUDBRAIN_DRIVER_CONFORMANCE")


def write_token_file(service, description="driver", role="driver"):
    out = service.cli("token", "create", "--role", role, description)
    line = out.stdout.strip()
    assert line.startswith("generated token: "), line
    fd, path = tempfile.mkstemp(prefix="cb-token-", dir=service.workdir)
    with os.fdopen(fd, "w") as f:
        f.write(line[len("generated token: "):] + "\n")
    return path, line[len("generated token: "):]


class DriverProcess:
    """An out-of-tree driver started by a test; stopped (or killed) by its PID only."""

    def __init__(self, argv, log_path, env=None):
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.running():
            # Its own process group: a hook it runs goes with it.
            os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def kill(self):
        return self.stop(signal.SIGKILL)

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""


def pool_driver(service, token_file, pool_file, state_file, driver="pool", extra=()):
    argv = [pool_driver_binary(), "--url", ws_url(service), "--token-file", token_file,
            "--driver", driver, "--pool", pool_file, "--state", state_file, *extra]
    return DriverProcess(argv, os.path.join(service.workdir, f"pool-driver-{driver}.log"))


def exec_driver(service, token_file, journal, lab_state, driver="lab", extra=(), program=None,
                env=None):
    argv = ["/usr/bin/python3", program or EXEC_DRIVER, "--url", ws_url(service),
            "--token-file", token_file, "--driver", driver,
            "--hook", f"/usr/bin/python3 {LAB_HOOK}", "--journal", journal, *extra]
    full_env = {"LAB_STATE": lab_state}
    full_env.update(env or {})
    return DriverProcess(argv, os.path.join(service.workdir, f"exec-driver-{driver}.log"), full_env)


def write_pool(path, machines):
    """machines: [(address, zone), ...]"""
    with open(path, "w") as f:
        f.write("# test pool\n")
        for address, zone in machines:
            f.write(f"{address} {zone}\n")
    return path


def ws_url(service):
    return f"ws://127.0.0.1:{service.port}/drivers/connect"


def provider_state(service, name):
    r = service.request("GET", "/providers")
    assert r.status == 200, r
    for p in r.json()["providers"]:
        if p["name"] == name:
            return p
    raise AssertionError(f"no provider {name} in {r.body}")


def readyz(service):
    return service.request("GET", "/readyz", auth=False)


# ---- the protocol's schemas -------------------------------------------------------------------

class Schemas:
    """Every message schema of docs/driver-protocol/, by message type."""

    BASE = "https://cloudbrain.dev/driver-protocol/v1/"

    def __init__(self):
        self.store = {}
        for path in glob.glob(os.path.join(SCHEMA_DIR, "*.schema.json")):
            with open(path) as f:
                schema = json.load(f)
            jsonschema.Draft202012Validator.check_schema(schema)
            self.store[schema["$id"]] = schema
        if len(self.store) < 21:
            raise AssertionError(f"only {len(self.store)} schemas in {SCHEMA_DIR}")

    def errors(self, message):
        kind = message.get("type") if isinstance(message, dict) else None
        schema = self.store.get(f"{self.BASE}{kind}.schema.json")
        if schema is None:
            return [f"no schema for a message of type {kind!r}"]
        resolver = jsonschema.RefResolver.from_schema(schema, store=self.store)
        checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
        validator = jsonschema.Draft202012Validator(schema, resolver=resolver,
                                                    format_checker=checker)
        return [e.message for e in validator.iter_errors(message)]


# ---- a driver played message by message ---------------------------------------------------------

LISTINGS = {"list": "machines", "list_reservations": "reservations"}


class RawDriver:
    """A WebSocket to /drivers/connect, spoken by hand. Every JSON message it sees or sends is
    kept in `seen` (with its direction) for schema checks. Use from asyncio.

    The hub has its providers' reconciler and janitor look again whenever a driver connects, so
    a listing may arrive at any time after `registered`; recv() answers it (an empty page, as
    a driver that made nothing would) unless a test turns `answer_listings` off, so that tests
    about something else see the messages they are about and no slot stays held by it."""

    def __init__(self, service, token):
        self.url = ws_url(service)
        self.token = token
        self.ws = None
        self.seen = []  # ("in" | "out", message)
        self.answer_listings = True
        self.listings_answered = 0

    async def connect(self, **kw):
        headers = {"Authorization": f"token {self.token}"} if self.token else {}
        self.ws = await websockets.connect(self.url, extra_headers=headers, compression=None,
                                           ping_interval=None, max_size=4 * 1024 * 1024,
                                           open_timeout=10, close_timeout=3, **kw)
        return self

    async def send(self, message, valid=True):
        """Sends a message; one a test makes wrong on purpose (valid=False) is not kept for the
        schema checks."""
        if isinstance(message, (dict, list)):
            if isinstance(message, dict) and valid:
                self.seen.append(("out", message))
            message = json.dumps(message)
        await self.ws.send(message)

    async def recv(self, timeout=10, skip_pings=True):
        """The next message (answering the hub's pings on the way), or None at the timeout."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                text = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                return None
            message = json.loads(text)
            self.seen.append(("in", message))
            if skip_pings and message.get("type") == "ping":
                await self.reply({"type": "pong", "id": message["id"]})
                continue
            if self.answer_listings and message.get("type") in LISTINGS:
                await self.reply({"type": "result", "id": message["id"],
                                  LISTINGS[message["type"]]: [], "next_page_token": None})
                self.listings_answered += 1
                continue
            return message

    async def reply(self, message):
        """Answers the hub on the way; once the hub is closing (a test made it), what is still
        to be read matters, not this answer."""
        try:
            await self.send(message)
        except websockets.exceptions.ConnectionClosed:
            pass

    async def register(self, driver, max_in_flight=4, capabilities=("instances", "list")):
        await self.send({"type": "register", "driver": driver, "protocol_version": 1,
                         "capabilities": list(capabilities), "max_in_flight": max_in_flight})
        return await self.recv()

    async def closed(self, timeout=10):
        """The close code once the hub closes the connection (None if it does not in time)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                text = await asyncio.wait_for(self.ws.recv(), end - time.monotonic())
                self.seen.append(("in", json.loads(text)))
            except websockets.exceptions.ConnectionClosed:
                return self.ws.close_code
            except asyncio.TimeoutError:
                return None
        return None

    async def close(self):
        if self.ws:
            await self.ws.close()


def run(coro, timeout=120):
    return asyncio.run(asyncio.wait_for(coro, timeout))
