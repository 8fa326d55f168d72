"""Killing cloudbrain while it works: a client that keeps asking until the service answers, a
killer thread that SIGKILLs it at random moments and starts it again, and waiting for a run to
settle with the database's view of what is left when it does not. Used by the chaos tests.

stdlib only.
"""
import random
import threading
import time

from cloudbrain_test import wait_until


class Client:
    """Keeps asking until the service answers: connection errors and 5xx while it is down or
    restarting are retried, with the same Idempotency-Key for creates."""

    def __init__(self, service):
        self.service = service

    def call(self, method, path, body=None, headers=None, ok=(200, 201, 202), timeout=120):
        deadline = time.monotonic() + timeout
        pause = 0.05
        while True:
            try:
                r = self.service.request(method, path, body, headers=headers, timeout=10)
                if r.status in ok:
                    return r
                if r.status < 500:
                    raise AssertionError("%s %s -> %r" % (method, path, r))
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("%s %s: no answer in %ss" % (method, path, timeout))
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


class Killer(threading.Thread):
    """SIGKILLs the service at random moments and starts it again, `kills` times."""

    def __init__(self, service, kills, unfinished, lo=0.3, hi=1.0):
        super().__init__(daemon=True)
        self.service, self.kills, self.lo, self.hi = service, kills, lo, hi
        self.unfinished = unfinished  # how much work is left, read just before each kill
        self.left_at_kill = []
        self.done = 0
        self.failure = None
        self.last_restart = None

    def run(self):
        try:
            rng = random.Random()
            for _ in range(self.kills):
                time.sleep(rng.uniform(self.lo, self.hi))
                left = self.unfinished()
                if left == 0:
                    break  # a kill now would prove nothing; the test counts the real ones
                self.left_at_kill.append(left)
                self.service.kill()
                self.done += 1
                self.service.start(wait=True)
                self.last_restart = time.monotonic()
        except Exception as e:  # reported by the test
            self.failure = e


def wait_all(db, client, run, state, n, timeout):
    """Waits until all `n` instances tagged run=`run` are in `state` (failing at once if one
    errored on the way to running); on timeout, shows the database's view of what is left."""
    def done():
        if state == "running":
            no_errors(client, run)
        r = client.call("GET", "/instances?state=%s&tag.run=%s&limit=1000" % (state, run),
                        ok=(200,))
        return len(r.json()["instances"]) == n
    try:
        wait_until(done, timeout, interval=0.5, what="%d instances %s" % (n, state))
    except AssertionError as e:
        detail = db.query("SELECT state || ': ' || count(*) FROM instances GROUP BY state")
        jobs = db.query("SELECT kind || ' ' || state || ' attempts=' || attempts || ' run_at='"
                        " || run_at || ' lease=' || coalesce(lease_owner, '-') || ' ' || "
                        "coalesce(last_error, '') FROM jobs WHERE state IN "
                        "('queued', 'running') ORDER BY id LIMIT 10")
        raise AssertionError("%s\ninstances:\n%s\nunfinished jobs:\n%s"
                             % (e, detail, jobs)) from None


def no_errors(client, run):
    r = client.call("GET", "/instances?state=errored&tag.run=%s&limit=10" % run, ok=(200,))
    errored = r.json()["instances"]
    if errored:
        raise AssertionError("instances errored: %s" % [(i["id"], i["error_reason"])
                                                        for i in errored])
