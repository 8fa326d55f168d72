"""Hostile clients against the real binary: 2,000 slowloris connections from one address while
another address is served on time; the total connection cap shedding with 503 instead of
stalling; request smuggling shapes refused with 400; limits on bodies refused with clear
problem+json; and 401s that take the same time whether the token's id exists or not.

Prints the figures (latency percentiles during the attack, file descriptors, timing medians).
stdlib only; tests/run-all.sh provides the binary and the database template.
"""
import http.client
import json
import os
import resource
import select
import socket
import statistics
import threading
import time
import unittest

from cloudbrain_test import ServiceTestCase, wait_until

ATTACKER = "127.0.0.2"  # loopback: every 127/8 address reaches the service on 127.0.0.1


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def raw_exchange(port, data, timeout=10):
    """Sends `data` on a new connection and returns (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1]) if lines and lines[0].startswith("HTTP/") else None
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return status, headers, body


class Slowloris(ServiceTestCase):
    PER_ADDRESS = 256
    MAX_CONNECTIONS = 600
    REJECTING = 256  # connections answered 503 at once, at most (net/server.cpp)
    HEAD_TIMEOUT = 3
    settings = {"max-connections-per-address": str(PER_ADDRESS),
                "max-connections": str(MAX_CONNECTIONS),
                "request-head-timeout": "%ds" % HEAD_TIMEOUT}

    def test_2000_slow_connections_from_one_address_do_not_stall_another(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 4096:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
        inst = self.create()
        self.wait_state(inst["id"], "running")
        pid = self.service.proc.pid
        fds_before = open_fds(pid)
        stop = threading.Event()
        held = []
        opened = {"ok": 0, "refused": 0}
        peak_fds = [fds_before]

        def attack():
            # Each connection sends a request line and then one header byte now and then.
            for _ in range(2000):
                if stop.is_set():
                    return
                s = socket.socket()
                s.setblocking(True)
                s.settimeout(2)
                try:
                    s.bind((ATTACKER, 0))
                    s.connect(("127.0.0.1", self.service.port))
                    s.sendall(b"GET /instances HTTP/1.1\r\nHost: x\r\nX-a: ")
                    held.append(s)
                    opened["ok"] += 1
                except OSError:
                    opened["refused"] += 1
                    s.close()
            while not stop.is_set():
                for s in list(held):
                    try:
                        s.send(b"a")
                    except OSError:
                        held.remove(s)
                        s.close()
                stop.wait(0.5)

        def watch():
            while not stop.is_set():
                peak_fds[0] = max(peak_fds[0], open_fds(pid))
                stop.wait(0.1)

        attacker = threading.Thread(target=attack, daemon=True)
        watcher = threading.Thread(target=watch, daemon=True)
        attacker.start()
        watcher.start()
        latencies = []
        failures = []
        try:
            wait_until(lambda: opened["ok"] + opened["refused"] >= 2000, 60,
                       what="2,000 attacking connections")
            conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=5)
            deadline = time.monotonic() + 2 * self.HEAD_TIMEOUT + 2
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                try:
                    conn.request("GET", "/instances/" + inst["id"],
                                 headers={"Authorization": "token " + self.service.token})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 200:
                        failures.append(r.status)
                except OSError as e:
                    failures.append(repr(e))
                    conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=5)
                latencies.append(time.perf_counter() - t0)
            conn.close()
        finally:
            stop.set()
            attacker.join(30)
            watcher.join(5)
            for s in held:
                s.close()
        self.assertEqual(failures, [], "the other address was refused or failed")
        latencies.sort()
        p50 = latencies[len(latencies) // 2]
        p99 = latencies[int(len(latencies) * 0.99)]
        print("\nslowloris: 2000 connections from %s (%d accepted by the kernel), %d requests "
              "from 127.0.0.1 during the attack: p50 %.1f ms, p99 %.1f ms; service fds %d "
              "before, %d at most (cap %d per address, %d in all)"
              % (ATTACKER, opened["ok"], len(latencies), p50 * 1000, p99 * 1000, fds_before,
                 peak_fds[0], self.PER_ADDRESS, self.MAX_CONNECTIONS))
        self.assertGreater(len(latencies), 20)
        self.assertLess(p99, 0.1, "p99 %.1f ms during the attack" % (p99 * 1000))
        # The service's descriptors stayed under its cap: it served at most the per-address cap
        # of the attacker's connections, and answered the rest 503 a bounded number at a time
        # (plus its own: listeners, PostgreSQL, the other client, logs).
        self.assertLess(peak_fds[0], self.MAX_CONNECTIONS)
        self.assertLess(peak_fds[0], fds_before + self.PER_ADDRESS + self.REJECTING + 32)
        # The slow heads were cut off: the service is back to where it was.
        wait_until(lambda: open_fds(pid) <= fds_before + 8, 30,
                   what="the slow connections to be closed")


class ConnectionCap(ServiceTestCase):
    settings = {"max-connections": "40", "max-connections-per-address": "0"}

    def hold(self, n):
        """n connections the service admitted and holds, silent. A connection the harness made
        before (its readiness probes) may still count against the cap for a moment on a loaded
        machine, so one of ours may be turned away (answered 503 and closed, which makes it
        readable): such a one is replaced until n are held."""
        idle = []
        deadline = time.monotonic() + 30
        while True:
            while len(idle) < n:
                idle.append(socket.create_connection(("127.0.0.1", self.service.port), timeout=5))
            time.sleep(0.3)  # every one admitted or turned away by now
            turned_away = select.select(idle, [], [], 0)[0]
            if not turned_away:
                return idle
            for s in turned_away:
                idle.remove(s)
                s.close()
            if time.monotonic() > deadline:
                for s in idle:
                    s.close()
                self.fail("the service never held %d silent connections" % n)

    def test_connections_over_the_cap_get_503_at_once_and_the_rest_are_served(self):
        idle = []
        try:
            idle = self.hold(40)
            t0 = time.perf_counter()
            status, headers, body = raw_exchange(
                self.service.port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
            took = time.perf_counter() - t0
            self.assertEqual(status, 503, body)
            self.assertEqual(headers.get("Retry-After"), "1")
            self.assertEqual(json.loads(body)["code"], "overloaded")
            self.assertLess(took, 2.5, "the refusal was not immediate")
            # One of the held connections sends its request: it is served.
            idle[0].sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = idle[0].recv(4096)
            self.assertTrue(answer.startswith(b"HTTP/1.1 200"), answer)
        finally:
            for s in idle:
                s.close()
        wait_until(lambda: self.service.request("GET", "/livez", auth=False).status == 200, 10,
                   what="the service to take connections again")


class Smuggling(ServiceTestCase):
    SHAPES = {
        "Content-Length and Transfer-Encoding":
            b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "two Content-Lengths":
            b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n"
            b"\r\n{}",
        "two different Content-Lengths":
            b"POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 40\r\n"
            b"\r\n{}",
        "a Transfer-Encoding list":
            b"POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            b"0\r\n\r\n",
        "two Transfer-Encodings":
            b"POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "Transfer-Encoding on HTTP/1.0":
            b"POST /instances HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "no Host": b"GET /livez HTTP/1.1\r\n\r\n",
        "two Hosts": b"GET /livez HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    }

    def test_ambiguous_framing_is_400_and_closes_the_connection(self):
        for name, data in self.SHAPES.items():
            with self.subTest(shape=name):
                before = self.db.count_rows()
                status, headers, body = raw_exchange(
                    self.service.port, data + b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
                self.assertEqual(status, 400, (name, body))
                self.assertEqual(headers.get("Content-Type"), "application/problem+json")
                length = int(headers["Content-Length"])
                problem = json.loads(body[:length])
                self.assertEqual(problem["code"], "bad_request")
                self.assertEqual(headers.get("Connection"), "close")
                # Nothing after the refused request was read as a second request.
                self.assertEqual(body[length:], b"")
                self.assertEqual(self.db.count_rows(), before)

    def test_plain_framing_still_works(self):
        body = json.dumps({"provider": "gce", "image": "i"}).encode()
        req = (b"POST /instances HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
               b"Authorization: token " + self.service.token.encode() +
               b"\r\nTransfer-Encoding: chunked\r\n\r\n" +
               b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
        status, _, answer = raw_exchange(self.service.port, req)
        self.assertEqual(status, 201, answer)


class BodyLimits(ServiceTestCase):
    def post(self, body):
        return self.service.request("POST", "/instances", raw=body,
                                    headers={"Content-Type": "application/json"})

    def test_limits_are_named_in_the_problem(self):
        cases = [
            (json.dumps({"provider": "gce", "image": "i",
                         "tags": {"k%d" % i: "v" for i in range(33)}}), 422, "32"),
            (json.dumps({"provider": "gce", "image": "i", "tags": {"k" * 64: "v"}}), 422, "k" * 8),
            (json.dumps({"provider": "gce", "image": "i", "tags": {"k": "v" * 64}}), 422, "'k'"),
            ('{"provider": "gce", "image": "i", "tags": ' + "[" * 17 + "]" * 17 + "}", 400,
             "nested deeper than 16 levels"),
            ("[" * 100000, 400, "nested deeper than 16 levels"),
        ]
        for body, status, mention in cases:
            with self.subTest(body=body[:60]):
                before = self.db.count_rows()
                r = self.post(body.encode())
                p = self.assertProblem(r, status)
                self.assertIn(mention, p["detail"] + " ".join(p["errors"]), p)
                self.assertEqual(self.db.count_rows(), before)


class UnauthorizedTiming(ServiceTestCase):
    TRIES = 200

    def test_unknown_id_and_wrong_secret_take_the_same_time(self):
        good = self.service.create_token("timing")
        token_id, secret = good.split("-", 1)
        wrong = "0" * 32 if secret != "0" * 32 else "1" * 32
        cases = {"unknown id": "token %d-%s" % (int(token_id) + 100000, secret),
                 "wrong secret": "token %s-%s" % (token_id, wrong)}
        took = {k: [] for k in cases}
        conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=10)
        # Interleaved, so that whatever else the machine does hits both alike.
        for _ in range(self.TRIES):
            for name, value in cases.items():
                t0 = time.perf_counter()
                conn.request("GET", "/instances", headers={"Authorization": value})
                r = conn.getresponse()
                r.read()
                took[name].append(time.perf_counter() - t0)
                self.assertEqual(r.status, 401)
        conn.close()
        medians = {k: statistics.median(v) for k, v in took.items()}
        ratio = max(medians.values()) / min(medians.values())
        print("\n401 timing over %d tries each: %s; ratio %.3f"
              % (self.TRIES, ", ".join("%s %.2f ms" % (k, v * 1000) for k, v in medians.items()),
                 ratio))
        self.assertLess(ratio, 1.10, medians)


if __name__ == "__main__":
    unittest.main()
