"""GET /usage and `cloudbrain usage` against a scripted history, and the spend and unused-capacity
metrics against live state.

The scripted run writes instance_events and reservation_events rows with known times straight
into the test's own database (triggers off, as a restore would), so that the endpoint computes
from a history whose every second is known; the expected hours and costs are computed here by
hand, in exact decimals, and must match to the last digit the report prints. The CSV and the
terminal table must say what the JSON says."""

import csv
import datetime
import decimal
import io
import json
import os
import subprocess
import time
import unittest
import uuid

from cloudbrain_test import ServiceTestCase, wait_until

D = decimal.Decimal
SIX = D("0.000001")


def fake(**extra):
    section = {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
               "delete-delay": "10ms", "rate-limit": "2000", "max-in-flight": "100"}
    section.update(extra)
    return section


def t(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def hours(seconds):
    """Seconds as the report writes hours: six decimals, half away from zero."""
    return (D(seconds) / 3600).quantize(SIX, rounding=decimal.ROUND_HALF_UP)


def money(amount_seconds):
    """A sum of seconds times prices, per hour, as the report rounds it."""
    return (amount_seconds / 3600).quantize(SIX, rounding=decimal.ROUND_HALF_UP)


def overlap(a1, b1, a2, b2):
    """Seconds of [a1, b1) within [a2, b2) (b: None for still on)."""
    start = max(a1, a2)
    ends = [x for x in (b1, b2) if x is not None]
    end = min(ends)
    return max(0, int((end - start).total_seconds()))


PRICES = {"east": {"standard": D("0.10"), "premium": D("0.40"), "reserved": D("0.07")},
          "west": {"standard": D("0.12")}}


class ScriptedRun:
    """One run's history: instances and reservations with known times, tagged run=<id>."""

    def __init__(self, db, run):
        self.db = db
        self.run = run
        self.instances = []     # (id, provider, type, tags, reservation, [(from, to, at)])
        self.reservations = []  # (id, provider, type, count, tags, [(from, to, at)])

    def reservation(self, provider, itype, count, events, tags=None):
        rid = str(uuid.uuid4())
        self.reservations.append((rid, provider, itype, count,
                                  dict(tags or {}, run=self.run), events))
        return rid

    def instance(self, provider, itype, events, tags=None, reservation=None, run=None):
        iid = str(uuid.uuid4())
        self.instances.append((iid, provider, itype, dict(tags or {}, run=run or self.run),
                               reservation, events))
        return iid

    def write(self):
        sql = ["BEGIN", "SET LOCAL session_replication_role = replica"]
        for rid, provider, itype, count, tags, events in self.reservations:
            last = events[-1][1]
            sql.append(
                "INSERT INTO reservations (id, provider, instance_type, count, ends_at, state, tags)"
                f" VALUES ('{rid}', '{provider}', '{itype}', {count}, '2030-01-01T00:00:00Z',"
                f" '{last}', '{json.dumps(tags)}')")
            for frm, to, at in events:
                sql.append("INSERT INTO reservation_events (reservation_id, from_state, to_state,"
                           f" at) VALUES ('{rid}', {self.lit(frm)}, '{to}', '{at}')")
        for iid, provider, itype, tags, reservation, events in self.instances:
            last = events[-1][1]
            sql.append(
                "INSERT INTO instances (id, provider, image, instance_type, tags, state,"
                f" reservation_id) VALUES ('{iid}', '{provider}', 'img', '{itype}',"
                f" '{json.dumps(tags)}', '{last}', {self.lit(reservation)})")
            for frm, to, at in events:
                sql.append("INSERT INTO instance_events (instance_id, from_state, to_state, at)"
                           f" VALUES ('{iid}', {self.lit(frm)}, '{to}', '{at}')")
        sql.append("COMMIT")
        self.db.query(";\n".join(sql))

    @staticmethod
    def lit(value):
        return "NULL" if value is None else f"'{value}'"


def life(*steps):
    """Events from (state, time) steps: the first from NULL, each from the one before."""
    out, prev = [], None
    for state, at in steps:
        out.append((prev, state, at))
        prev = state
    return out


class Usage(ServiceTestCase):
    providers = {
        "east": fake(**{"standard-price-per-hour": "0.10", "premium-price-per-hour": "0.40",
                        "reserved-price-per-hour": "0.07"}),
        "west": fake(**{"zones": "zone-c", "standard-price-per-hour": "0.12"}),
        "bare": fake(**{"zones": "zone-x"}),
    }
    settings = {"currency": "EUR", "spend-ceiling-per-hour": "250",
                "janitor-interval": "1h", "reservation-unused-grace": "1h"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        # The scripted history has no creator: only a token of scope `all` (or an admin) counts
        # it (tests/integration/hardening/test_tokens.py shows a client token's own report).
        cls.service.token = cls.service.create_token("usage", "--scope", "all")
        cls.run_id = "u" + uuid.uuid4().hex[:10]
        s = ScriptedRun(cls.db, cls.run_id)
        # East: a reservation of 4 held 10:00-14:00, an instance in it 10:30-15:30 (on demand
        # after the reservation ends), a premium one outside any reservation, and, with another
        # run's tag, an instance in the same reservation 12:00-13:00.
        cls.ra = s.reservation("east", "standard", 4, life(
            ("pending", "2024-05-01T09:59:00Z"), ("active", "2024-05-01T10:00:00Z"),
            ("cancelling", "2024-05-01T13:59:30Z"), ("cancelled", "2024-05-01T14:00:00Z")),
            tags={"team": "a"})
        s.instance("east", "standard", life(
            ("creating", "2024-05-01T10:29:00Z"), ("starting", "2024-05-01T10:29:30Z"),
            ("running", "2024-05-01T10:30:00Z"), ("terminating", "2024-05-01T15:29:00Z"),
            ("terminated", "2024-05-01T15:30:00Z")), tags={"team": "a"}, reservation=cls.ra)
        s.instance("east", "premium", life(
            ("creating", "2024-05-01T10:59:00Z"), ("running", "2024-05-01T11:00:00Z"),
            ("terminating", "2024-05-01T11:30:00Z"), ("terminated", "2024-05-01T11:45:30Z")),
            tags={"team": "b"})
        s.instance("east", "standard", life(
            ("creating", "2024-05-01T11:59:00Z"), ("running", "2024-05-01T12:00:00Z"),
            ("terminated", "2024-05-01T13:00:00Z")), reservation=cls.ra, run="someone-else")
        # Before the period, and never running: not counted.
        s.instance("east", "standard", life(
            ("creating", "2024-04-30T09:59:00Z"), ("running", "2024-04-30T10:00:00Z"),
            ("terminated", "2024-04-30T12:00:00Z")))
        s.instance("east", "standard", life(
            ("creating", "2024-05-01T08:00:00Z"), ("errored", "2024-05-01T08:05:00Z")))
        s.reservation("east", "premium", 1, life(
            ("pending", "2024-05-01T08:00:00Z"), ("failed", "2024-05-01T08:01:00Z")))
        # West: a reservation of 2 held from the day before until 02:00, unused; an instance
        # running across the end of the period.
        s.reservation("west", "standard", 2, life(
            ("pending", "2024-04-30T21:59:00Z"), ("active", "2024-04-30T22:00:00Z"),
            ("cancelling", "2024-05-01T01:59:59Z"), ("expired", "2024-05-01T02:00:00Z")),
            tags={"team": "a"})
        s.instance("west", "standard", life(
            ("creating", "2024-05-01T22:59:00Z"), ("running", "2024-05-01T23:00:00Z"),
            ("terminated", "2024-05-02T01:00:00Z")))
        # A provider without prices: hours, but no cost.
        s.instance("bare", "standard", life(
            ("creating", "2024-05-01T05:59:00Z"), ("running", "2024-05-01T06:00:00Z"),
            ("errored", "2024-05-01T06:20:00Z")))
        s.write()
        cls.script = s

    # ---- the hand computation --------------------------------------------------------------

    def expected(self, start, end, group_by, provider=None):
        """Every group's figures, computed here from the script, as {key tuple: figures}."""
        t0, t1 = t(start), t(end)
        res = {rid: r for r in self.script.reservations for rid in [r[0]]}

        def held(events):
            starts = [t(at) for _, to, at in events if to == "active"]
            if not starts:
                return None
            ends = [t(at) for _, to, at in events
                    if to in ("cancelled", "expired", "failed") and t(at) >= starts[0]]
            return starts[0], (ends[0] if ends else None)

        def ran(events):
            starts = [t(at) for _, to, at in events if to == "running"]
            if not starts:
                return None
            ends = [t(at) for _, to, at in events
                    if to in ("terminated", "errored") and t(at) >= starts[0]]
            return starts[0], (ends[0] if ends else None)

        def key(p, itype, tags):
            out = []
            for k in group_by:
                out.append(p if k == "provider" else itype if k == "instance_type"
                           else tags.get(k[4:]))
            return tuple(out)

        groups = {}

        def group(k):
            return groups.setdefault(k, {"instances": 0, "reservations": 0, "run": 0,
                                         "reserved": 0, "unused": 0, "cost_s": D(0),
                                         "priced": True})

        for iid, p, itype, tags, rid, events in self.script.instances:
            if tags["run"] != self.run_id or (provider and p != provider):
                continue
            span = ran(events)
            if not span:
                continue
            run_s = overlap(span[0], span[1], t0, t1)
            if run_s <= 0:
                continue
            covered = 0
            if rid and held(res[rid][5]):
                h = held(res[rid][5])
                covered = overlap(max(span[0], h[0]), min(x for x in (span[1], h[1]) if x), t0, t1)
            g = group(key(p, itype, tags))
            g["instances"] += 1
            g["run"] += run_s
            price = PRICES.get(p, {}).get(itype)
            if price is None and run_s - covered > 0:
                g["priced"] = False
            g["cost_s"] += (run_s - covered) * (price or 0)
        for rid, p, itype, count, tags, events in self.script.reservations:
            if tags["run"] != self.run_id or (provider and p != provider):
                continue
            h = held(events)
            if not h:
                continue
            secs = overlap(h[0], h[1], t0, t1)
            if secs <= 0:
                continue
            used = 0
            for _, _, _, _, irid, ievents in self.script.instances:
                span = ran(ievents)
                if irid == rid and span:
                    a = max(span[0], h[0])
                    b = min(x for x in (span[1], h[1]) if x)
                    if a < b:
                        used += overlap(a, b, t0, t1)
            g = group(key(p, itype, tags))
            g["reservations"] += 1
            g["reserved"] += count * secs
            g["unused"] += max(0, count * secs - used)
            price = PRICES.get(p, {}).get("reserved", PRICES.get(p, {}).get(itype))
            if price is None:
                g["priced"] = False
            g["cost_s"] += count * secs * (price or 0)
        return groups

    def figures(self, g):
        return {"instances": g["instances"], "reservations": g["reservations"],
                "instance_hours": hours(g["run"]),
                "reserved_instance_hours": hours(g["reserved"]),
                "reserved_unused_instance_hours": hours(g["unused"]),
                "estimated_cost": money(g["cost_s"]) if g["priced"] else None}

    def total(self, groups):
        s = {"instances": 0, "reservations": 0, "run": 0, "reserved": 0, "unused": 0,
             "cost_s": D(0), "priced": True}
        for g in groups.values():
            for k in ("instances", "reservations", "run", "reserved", "unused", "cost_s"):
                s[k] += g[k]
            s["priced"] = s["priced"] and g["priced"]
        return self.figures(s)

    # ---- what the service says -------------------------------------------------------------

    def usage(self, query, accept=None):
        headers = {"Accept": accept} if accept else None
        r = self.service.request("GET", "/usage?" + query, headers=headers)
        self.assertEqual(r.status, 200, r)
        return r

    def as_figures(self, obj):
        return {k: (D(obj[k]) if isinstance(obj[k], (str, D)) else obj[k]) for k in obj}

    def check_report(self, start, end, group_by, extra=""):
        query = (f"from={start}&to={end}&group_by={','.join(group_by)}&tag.run={self.run_id}"
                 + extra)
        r = self.usage(query)
        self.assertEqual(r.header("Content-Type"), "application/json")
        body = json.loads(r.body, parse_float=D)
        provider = extra.partition("provider=")[2] or None
        want = self.expected(start, end, group_by, provider)
        self.assertEqual(body["currency"], "EUR")
        self.assertEqual(body["group_by"], group_by)
        self.assertEqual((body["from"], body["to"]),
                         (start.replace("Z", ".000000Z"), end.replace("Z", ".000000Z")))
        got = {tuple(g["group"][k] for k in group_by): g["figures"] for g in body["groups"]}
        self.assertEqual(set(got), set(want), body)
        for k, g in want.items():
            with self.subTest(group=k):
                self.assertEqual(got[k], self.figures(g))
        self.assertEqual(body["total"], self.total(want))
        return query, body

    # ---- the tests ---------------------------------------------------------------------------

    def test_scripted_run_matches_the_hand_computation(self):
        _, body = self.check_report("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z",
                                    ["provider", "instance_type", "tag.team"])
        # The figures the hand computation gives, written out once as a reader would check them.
        by_key = {tuple(g["group"].values()): g["figures"] for g in body["groups"]}
        east = by_key[("east", "standard", "a")]
        self.assertEqual((east["instance_hours"], east["reserved_instance_hours"],
                          east["reserved_unused_instance_hours"], east["estimated_cost"]),
                         (D(5), D(16), D("11.5"), D("1.27")))
        self.assertEqual(by_key[("east", "premium", "b")]["estimated_cost"], D("0.303333"))
        self.assertEqual(by_key[("west", "standard", "a")]["estimated_cost"], D("0.48"))
        self.assertEqual(by_key[("west", "standard", None)]["instance_hours"], D(1))
        self.assertIsNone(by_key[("bare", "standard", None)]["estimated_cost"])
        self.assertEqual(body["total"]["instance_hours"], D("7.091667"))
        self.assertIsNone(body["total"]["estimated_cost"])

    def test_a_shorter_period_and_one_provider(self):
        _, body = self.check_report("2024-05-01T10:00:00Z", "2024-05-01T12:00:00Z",
                                    ["provider"])
        self.assertEqual([g["group"] for g in body["groups"]], [{"provider": "east"}])
        self.assertEqual(body["total"]["estimated_cost"], D("0.863333"))
        _, body = self.check_report("2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z", [],
                                    extra="&provider=east")
        self.assertEqual(len(body["groups"]), 1)
        self.assertEqual(body["total"]["estimated_cost"], D("1.573333"))

    def test_csv_and_the_terminal_table_say_what_the_json_says(self):
        group_by = ["provider", "instance_type", "tag.team"]
        start, end = "2024-05-01T00:00:00Z", "2024-05-02T00:00:00Z"
        query, body = self.check_report(start, end, group_by)
        r = self.usage(query, accept="text/csv")
        self.assertEqual(r.header("Content-Type"), "text/csv")
        self.assertTrue(r.body.endswith("\r\n"))
        self.assertNotIn("\n", r.body.replace("\r\n", ""), "every line ends CRLF")
        rows = list(csv.reader(io.StringIO(r.body, newline="")))
        names = ["instances", "reservations", "instance_hours", "reserved_instance_hours",
                 "reserved_unused_instance_hours", "estimated_cost"]
        self.assertEqual(rows[0], group_by + names + ["currency"])
        self.assertEqual(len(rows) - 1, len(body["groups"]))
        for row, g in zip(rows[1:], body["groups"]):
            self.assertEqual(row[:3], [v if v is not None else "" for v in g["group"].values()])
            for name, cell in zip(names, row[3:9]):
                want = g["figures"][name]
                self.assertEqual(cell, "" if want is None else str(want), name)
            self.assertEqual(row[9], "EUR" if g["figures"]["estimated_cost"] is not None else "")
        # Accept negotiation: the better q wins, JSON on a tie, neither is 406.
        self.assertEqual(self.usage(query, accept="text/csv;q=0.5, application/json")
                         .header("Content-Type"), "application/json")
        self.assertEqual(self.usage(query, accept="application/json;q=0.2, text/*")
                         .header("Content-Type"), "text/csv")
        self.assertEqual(self.usage(query, accept="*/*").header("Content-Type"),
                         "application/json")
        self.assertProblem(self.service.request("GET", "/usage?" + query,
                                                headers={"Accept": "text/html"}),
                           406, "not_acceptable")

        # The command line, from the database and the service's own configuration file.
        args = ["usage", "--config", self.service.config_path, "--from", start, "--to", end,
                "--group-by", ",".join(group_by), "--tag", f"run={self.run_id}"]
        out = self.service.cli(*args)
        lines = out.stdout.splitlines()
        self.assertEqual(lines[0], f"usage from {start.replace('Z', '.000000Z')} to "
                                   f"{end.replace('Z', '.000000Z')}; estimated cost in EUR")
        header = lines[1]
        columns = group_by + names
        starts = [header.index(c if i == 0 else "  " + c) + (0 if i == 0 else 2)
                  for i, c in enumerate(columns)]
        self.assertEqual(header.split(), columns)

        def cells(line):
            return [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]
        table = [cells(line) for line in lines[2:]]
        self.assertEqual(len(table), len(body["groups"]) + 1)
        for row, g in zip(table, body["groups"] + [None]):
            fig = body["total"] if g is None else g["figures"]
            keys = ["total", "", ""] if g is None else [
                v if v is not None else "-" for v in g["group"].values()]
            self.assertEqual(row[:3], keys)
            for name, cell in zip(names, row[3:]):
                want = fig[name]
                self.assertEqual(cell, "-" if want is None else str(want), (name, row))
        # Its CSV and JSON are the API's, byte for byte (CRLF line ends included).
        env = dict(os.environ, DATABASE_URL=self.db.url)
        printed = subprocess.run([self.service.bin, *args, "--format", "csv"], env=env,
                                 capture_output=True, timeout=60, check=True).stdout
        self.assertEqual(printed.decode(), self.usage(query, accept="text/csv").body)
        self.assertEqual(self.service.cli(*args, "--format", "json").stdout.rstrip("\n"),
                         self.usage(query).body)

    def test_bad_queries_are_refused(self):
        cases = [
            ("from=yesterday", "invalid_request", "'from' must be an RFC 3339 time"),
            ("to=2024-13-01T00:00:00Z", "invalid_request", "'to' must be an RFC 3339 time"),
            ("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z", "invalid_request",
             "'from' must be before 'to'"),
            ("from=2022-01-01T00:00:00Z&to=2024-01-01T00:00:00Z", "invalid_request",
             "at most 366 days"),
            ("group_by=provider,zone", "invalid_request", "not 'zone'"),
            ("group_by=tag.Team", "invalid_request", "not 'tag.Team'"),
            ("group_by=provider,provider", "invalid_request", "names 'provider' twice"),
            ("from=2024-05-01T00:00:00Z&from=2024-05-01T01:00:00Z", "invalid_request",
             "'from' is given twice"),
            ("colour=red", "unknown_parameter", "unknown query parameter 'colour'"),
        ]
        for query, code, text in cases:
            with self.subTest(query=query):
                p = self.assertProblem(self.service.request("GET", "/usage?" + query), 422, code)
                self.assertTrue(any(text in e for e in p["errors"]), p)
        self.assertProblem(self.service.request("GET", "/usage", auth=False), 401,
                           "invalid_token")
        out = self.service.cli("usage", "--from", "yesterday", check=False)
        self.assertEqual(out.returncode, 2)
        self.assertIn("'from' must be an RFC 3339 time", out.stderr)
        out = self.service.cli("usage", "--colour", "red", check=False)
        self.assertEqual(out.returncode, 2)
        self.assertIn("unknown option '--colour'", out.stderr)

    def test_live_instances_are_counted_from_the_history_the_service_writes(self):
        run = "v" + uuid.uuid4().hex[:10]
        start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
        inst = self.create(provider="east", tags={"run": run})
        self.wait_state(inst["id"], "running")
        time.sleep(1.2)
        self.service.request("DELETE", f"/instances/{inst['id']}")
        self.wait_state(inst["id"], "terminated")
        stop = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=5)
        query = (f"from={start.strftime('%Y-%m-%dT%H:%M:%SZ')}"
                 f"&to={stop.strftime('%Y-%m-%dT%H:%M:%SZ')}&group_by=&tag.run={run}")
        body = json.loads(self.usage(query).body, parse_float=D)
        total = body["total"]
        self.assertEqual((total["instances"], total["reservations"]), (1, 0))
        ran = D(self.db.query(
            "SELECT extract(epoch FROM max(at) FILTER (WHERE to_state = 'terminated') "
            "- min(at) FILTER (WHERE to_state = 'running')) FROM instance_events "
            f"WHERE instance_id = '{inst['id']}'"))
        self.assertGreater(ran, D(1))
        self.assertEqual(total["instance_hours"], hours(ran))
        self.assertEqual(total["estimated_cost"], money(ran * D("0.10")))

    def test_the_metrics_estimate_spend_and_count_unused_reserved_places(self):
        run = "m" + uuid.uuid4().hex[:10]
        r = self.service.request("POST", "/reservations", {"provider": "east", "count": 3,
                                                           "tags": {"run": run}})
        self.assertEqual(r.status, 201, r)
        rid = r.json()["id"]
        wait_until(lambda: self.service.request("GET", f"/reservations/{rid}").json()["state"]
                   == "active", 30, what="the reservation to be active")
        inside = self.create(provider="east", reservation_id=rid, tags={"run": run})
        outside = self.create(provider="east", instance_type="premium", tags={"run": run})
        for i in (inside, outside):
            self.wait_state(i["id"], "running")

        def scrape():
            # The database figures are read at most every 2 seconds.
            time.sleep(2.1)
            text = self.service.request("GET", "/metrics", auth=False).body
            samples = {}
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    samples[name] = float(value)
            return text, samples
        text, samples = scrape()
        self.assertEqual(samples['cloudbrain_reserved_unused_instances{provider="east",'
                                 'instance_type="standard"}'], 2)
        self.assertEqual(samples['cloudbrain_reserved_unused_instances{provider="west",'
                                 'instance_type="standard"}'], 0)
        # One premium instance on demand (0.40) and three reserved places (0.07 each).
        self.assertAlmostEqual(samples['cloudbrain_estimated_spend_per_hour{provider="east"}'],
                               0.61, places=9)
        self.assertEqual(samples['cloudbrain_estimated_spend_per_hour{provider="west"}'], 0)
        self.assertNotIn('cloudbrain_estimated_spend_per_hour{provider="bare"}', samples,
                         "a provider without prices has no estimate")
        self.assertEqual(samples["cloudbrain_spend_ceiling_per_hour"], 250)
        self.assertIn("# HELP cloudbrain_estimated_spend_per_hour Estimated spend per hour of "
                      "what the provider runs and holds now, in EUR", text)
        check = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                               capture_output=True, timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

        self.service.request("DELETE", f"/instances/{inside['id']}")
        self.service.request("DELETE", f"/instances/{outside['id']}")
        for i in (inside, outside):
            self.wait_state(i["id"], "terminated")
        _, samples = scrape()
        self.assertEqual(samples['cloudbrain_reserved_unused_instances{provider="east",'
                                 'instance_type="standard"}'], 3)
        self.assertAlmostEqual(samples['cloudbrain_estimated_spend_per_hour{provider="east"}'],
                               0.21, places=9)
        self.service.request("DELETE", f"/reservations/{rid}")
        wait_until(lambda: self.service.request("GET", f"/reservations/{rid}").json()["state"]
                   == "cancelled", 30, what="the reservation to be cancelled")
        _, samples = scrape()
        self.assertEqual(samples['cloudbrain_reserved_unused_instances{provider="east",'
                                 'instance_type="standard"}'], 0)
        self.assertEqual(samples['cloudbrain_estimated_spend_per_hour{provider="east"}'], 0)


if __name__ == "__main__":
    unittest.main()
