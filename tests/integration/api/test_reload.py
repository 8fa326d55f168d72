"""SIGHUP (systemctl reload): the configuration is read again while requests keep flowing.
A provider added to the file is served without a single failed request during a load, over
kept-alive connections and new ones; systemd hears RELOADING=1 then READY=1. A file that does
not read is refused whole and the service goes on as it was; changes a running process cannot
apply (an existing provider's section, listen, ...) are named in the log and left alone."""

import http.client
import json
import re
import signal
import sys
import threading
import time
import unittest

from cloudbrain_test import Database, NotifySocket, Service, wait_until

LOAD_THREADS = 6
LOAD_SECONDS_MAX = 60  # each load thread stops by then whatever happens
REQUESTS_PER_THREAD_MAX = 5000


class Load:
    """Bounded client load: threads that send requests until told to stop (or a cap on time and
    count), half over one kept-alive connection each, half over a new connection per request.
    Every response that is not the one expected, and every connection error, is a failure."""

    def __init__(self, service):
        self.service = service
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures = []
        self.providers = ["gce"]  # the providers the load creates instances on
        self.created = {}  # provider -> instance ids
        self.threads = [threading.Thread(target=self.run, args=(n,), daemon=True)
                        for n in range(LOAD_THREADS)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(LOAD_SECONDS_MAX + 30)
        return self

    def run(self, n):
        keep_alive = n % 2 == 0
        conn = None
        deadline = time.monotonic() + LOAD_SECONDS_MAX
        for i in range(REQUESTS_PER_THREAD_MAX):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            with self.lock:
                providers = list(self.providers)
            provider = providers[i % len(providers)]
            if i % 3 == 0:
                method, path, body, want = "GET", "/providers", None, 200
            elif i % 3 == 1:
                method, path, want = "POST", "/instances", 201
                body = {"provider": provider, "image": "image-2016-01-01",
                        "tags": {"load": "reload", "thread": str(n)}}
            else:
                method, path, body, want = "GET", "/instances?tag.load=reload&limit=5", None, 200
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
                headers = {"Authorization": "token " + self.service.token}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    headers["Content-Type"] = "application/json"
                conn.request(method, path, body=data, headers=headers)
                r = conn.getresponse()
                text = r.read().decode()
                if r.status != want:
                    with self.lock:
                        self.failures.append(f"{method} {path} {provider}: {r.status} {text}")
                else:
                    with self.lock:
                        self.ok += 1
                        if method == "POST":
                            self.created.setdefault(provider, []).append(json.loads(text)["id"])
            except (OSError, http.client.HTTPException) as e:
                with self.lock:
                    self.failures.append(f"{method} {path}: {type(e).__name__}: {e}")
                if conn is not None:
                    conn.close()
                conn = None
            if not keep_alive and conn is not None:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()


class ReloadTestCase(unittest.TestCase):
    def setUp(self):
        self.notify = NotifySocket()
        self.addCleanup(self.notify.close)
        self.db = Database()
        self.addCleanup(self.db.drop)
        self.service = Service(self.db, env={"NOTIFY_SOCKET": self.notify.path})
        self.service.start()
        self.addCleanup(self.stop_service)
        self.service.request("GET", "/instances")  # the token is verified once, up front
        wait_until(lambda: (self.notify.drain(0.1),
                            any("READY" in st for st in self.notify.states()))[1],
                   30, what="READY=1 at start")

    def stop_service(self):
        self.assertEqual(self.service.stop(), 0, self.service.log_tail())

    def provider_names(self):
        r = self.service.request("GET", "/providers")
        self.assertEqual(r.status, 200, r)
        return {p["name"]: p for p in r.json()["providers"]}

    def reload(self):
        """Sends SIGHUP and waits for the READY=1 that ends the reload; returns the messages the
        notify socket received from RELOADING=1 on."""
        self.notify.drain(0.05)
        before = len(self.notify.states())
        self.service.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: (self.notify.drain(0.1),
                            any("READY" in s for s in self.notify.states()[before:]))[1],
                   30, what="READY=1 after the reload")
        return self.notify.states()[before:]

    def assert_reload_protocol(self, states):
        self.assertEqual(states[0].get("RELOADING"), "1", states)
        # Type=notify-reload wants the monotonic time of the reload's start, in microseconds.
        usec = int(states[0]["MONOTONIC_USEC"])
        self.assertLess(abs(usec / 1e6 - time.clock_gettime(time.CLOCK_MONOTONIC)), 30)
        ready = [s for s in states if s.get("READY") == "1"]
        self.assertEqual(len(ready), 1, states)
        self.assertIn("serving", ready[0]["STATUS"])
        return ready[0]["STATUS"]

    def metric(self, name, labels=""):
        text = self.service.request("GET", "/metrics", auth=False).body
        m = re.search(r"^" + re.escape(name + labels) + r" (\S+)$", text, re.M)
        self.assertIsNotNone(m, f"{name}{labels} not in /metrics")
        return float(m.group(1))

    def log_events(self, message):
        out = []
        for line in self.service.log_lines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("msg") == message:
                out.append(event)
        return out


class AddProvider(ReloadTestCase):
    def test_a_provider_added_under_load_without_a_failed_request(self):
        self.assertEqual(self.notify.states(), [{"READY": "1", "STATUS": "serving"}])
        self.assertNotIn("second", self.provider_names())
        r = self.service.request("POST", "/instances", {"provider": "second", "image": "x"})
        self.assertEqual(r.status, 422, r)
        self.assertEqual(r.json()["code"], "unknown_provider")

        load = Load(self.service).start()
        try:
            time.sleep(1.5)
            self.service.providers["second"] = {"type": "fake", "zones": "zone-c",
                                                "boot-delay": "20ms", "rate-limit": "2000",
                                                "max-in-flight": "50"}
            self.service.write_config()
            states = self.reload()
            status = self.assert_reload_protocol(states)
            self.assertIn("providers added: second", status)
            providers = self.provider_names()
            self.assertIn("second", providers)
            self.assertEqual(providers["second"]["zones"], ["zone-c"])
            self.assertEqual(providers["second"]["type"], "fake")
            with load.lock:
                load.providers.append("second")
            time.sleep(1.5)
        finally:
            load.finish()
        print(f"load across the reload: {load.ok} requests answered as expected, "
              f"{len(load.failures)} failed; created on gce {len(load.created.get('gce', []))}, "
              f"on second {len(load.created.get('second', []))}", file=sys.stderr)
        self.assertEqual(load.failures, [], f"{len(load.failures)} of "
                         f"{load.ok + len(load.failures)} requests failed")
        self.assertGreater(load.ok, 100)
        self.assertGreater(len(load.created.get("gce", [])), 10)
        self.assertGreater(len(load.created.get("second", [])), 3)

        # The new provider does the work: its instances run in its zone, on its fake cloud.
        for instance_id in load.created["second"][:3]:
            def running(i=instance_id):
                r = self.service.request("GET", f"/instances/{i}")
                return r.json() if r.json()["state"] == "running" else None
            inst = wait_until(running, 30, what=f"{instance_id} running")
            self.assertEqual(inst["provider"], "second")
            self.assertEqual(inst["zone"], "zone-c")
        self.assertGreaterEqual(self.provider_names()["second"]["details"]["vms"], 3)

        added = self.log_events("provider added")
        self.assertEqual([e["provider"] for e in added], ["second"])
        self.assertEqual(len(self.log_events("configuration reloaded")), 1)
        self.assertEqual(self.metric("cloudbrain_config_reloads_total", '{outcome="success"}'), 1)
        self.assertEqual(self.metric("cloudbrain_config_last_reload_successful"), 1)
        self.assertGreater(self.metric("cloudbrain_provider_circuit_state",
                                       '{provider="second",state="ok"}'), 0)

        # A second SIGHUP with nothing new changes nothing.
        states = self.reload()
        self.assertIn("no provider added", self.assert_reload_protocol(states))
        self.assertEqual(sorted(self.provider_names()), ["gce", "second"])
        self.assertEqual(self.metric("cloudbrain_config_reloads_total", '{outcome="success"}'), 2)


class RefuseOrKeep(ReloadTestCase):
    def test_a_bad_file_is_refused_whole_then_a_good_one_applies(self):
        good = dict(self.service.providers)
        # One good new section and one bad: neither is applied.
        self.service.providers["third"] = {"type": "fake", "zones": "zone-t"}
        self.service.providers["broken"] = {"type": "fake", "zones": "zone-x",
                                            "rate-limit": "fast"}
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("refused", status)
        self.assertIn("rate-limit", status)
        self.assertEqual(sorted(self.provider_names()), ["gce"])
        refused = self.log_events("configuration reload refused")
        self.assertEqual(len(refused), 1)
        self.assertIn("[provider.broken]", refused[0]["error"])
        self.assertEqual(self.metric("cloudbrain_config_reloads_total", '{outcome="failure"}'), 1)
        self.assertEqual(self.metric("cloudbrain_config_last_reload_successful"), 0)
        self.assertEqual(self.service.request("GET", "/readyz", auth=False).status, 200)
        r = self.service.request("POST", "/instances", {"provider": "gce", "image": "x"})
        self.assertEqual(r.status, 201, r)

        # A driver that refuses its section fails the reload too.
        self.service.providers = dict(good)
        self.service.providers["third"] = {"type": "fake", "zones": "zone-t",
                                           "no-such-key": "1"}
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("no-such-key", status)
        self.assertEqual(sorted(self.provider_names()), ["gce"])

        # Fixed: it applies.
        self.service.providers = dict(good)
        self.service.providers["third"] = {"type": "fake", "zones": "zone-t"}
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("providers added: third", status)
        self.assertEqual(sorted(self.provider_names()), ["gce", "third"])
        self.assertEqual(self.metric("cloudbrain_config_last_reload_successful"), 1)

    def test_what_a_running_process_cannot_apply_is_named_and_kept(self):
        old_port = self.service.port
        original_gce = dict(self.service.providers["gce"])
        # The file now has gce changed (its zones), listen and reconcile-interval changed,
        # log-level changed, and a new provider "other".
        self.service.providers = {"gce": dict(original_gce, zones="zone-z"),
                                  "other": {"type": "fake", "zones": "zone-o"}}
        self.service.settings["reconcile-interval"] = "45s"
        self.service.settings["log-level"] = "warn"
        self.service.port = old_port + 1 if old_port < 65535 else old_port - 1
        self.service.write_config()
        self.service.port = old_port
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("providers added: other", status)
        self.assertIn("log-level applied", status)
        self.assertIn("changed providers, kept as they were: gce", status)
        self.assertIn("not applied: listen, reconcile-interval (restart to apply)", status)
        providers = self.provider_names()
        self.assertEqual(providers["gce"]["zones"], ["zone-a", "zone-b"])
        self.assertEqual(providers["other"]["zones"], ["zone-o"])
        part = self.log_events("configuration reloaded in part")
        self.assertEqual(len(part), 1)
        self.assertEqual(part[0]["level"], "warn")
        self.assertEqual(part[0]["summary"], status[len("serving; "):])
        # Still on its old address, and logging at the new level: no access log lines.
        quiet = self.service.request("GET", "/livez", auth=False)
        self.assertEqual(quiet.status, 200)
        self.service.request("GET", "/instances")  # one more line, had there been any
        time.sleep(1.5)
        self.assertEqual(self.access_log_of(quiet.header("X-Request-ID")), [])

        # Taking a provider out of the file does not take it away from the running process.
        self.service.providers = {"gce": original_gce}
        self.service.settings["log-level"] = "info"
        self.service.settings["reconcile-interval"] = "30s"
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("; providers no longer in the file, still served: other (restart", status)
        self.assertNotIn("changed providers", status)
        self.assertNotIn("not applied", status)
        self.assertEqual(sorted(self.provider_names()), ["gce", "other"])
        loud = self.service.request("GET", "/livez", auth=False)
        wait_until(lambda: self.access_log_of(loud.header("X-Request-ID")), 10,
                   what="the access log line at log-level info again")

    def test_token_rate_limit_applies_from_the_next_request(self):
        def statuses(n):
            return [self.service.request("GET", "/instances?limit=1").status for _ in range(n)]

        self.assertEqual(set(statuses(20)), {200})
        self.service.settings["token-rate-limit"] = "0.5"
        self.service.settings["token-rate-burst"] = "3"
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("token-rate-limit applied", status)
        self.assertNotIn("not applied", status)
        got = statuses(8)
        self.assertEqual(got[:3], [200] * 3, got)
        self.assertEqual(set(got[3:]), {429}, got)
        # Lifted again: everything passes at once.
        del self.service.settings["token-rate-limit"]
        del self.service.settings["token-rate-burst"]
        self.service.write_config()
        status = self.assert_reload_protocol(self.reload())
        self.assertIn("token-rate-limit applied", status)
        self.assertEqual(set(statuses(20)), {200})
        self.assertGreaterEqual(self.metric("cloudbrain_rate_limited_requests_total"), 5)

    def access_log_of(self, request_id):
        self.assertTrue(request_id)
        return [e for e in self.log_events("request") if e.get("request_id") == request_id]


if __name__ == "__main__":
    unittest.main()
