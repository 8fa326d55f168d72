"""cloudbrain-driver-conformance against the two example drivers, which pass it, and against a
deliberately broken driver that doubles creates, which it fails, naming the check."""

import os
import re
import subprocess
import tempfile
import unittest

from drivers_support import (DOUBLING_DRIVER, EXEC_DRIVER, LAB_HOOK, LAB_PASSWORD,
                             conformance_binary, pool_driver_binary, write_pool)

CHECK_LINE = re.compile(r"^(ok  |FAIL) (.+?)(: .*)?$")


class ConformanceKit(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="cb-conformance-")

    def kit(self, driver_cmd, *args, env=None):
        full_env = dict(os.environ)
        full_env.update(env or {})
        out = subprocess.run([conformance_binary(), "--driver-cmd", driver_cmd,
                              "--driver-log", os.path.join(self.dir, "driver.log"), *args],
                             capture_output=True, text=True, timeout=240, env=full_env)
        checks = {}
        for line in out.stdout.splitlines():
            m = CHECK_LINE.match(line)
            if m:
                checks[m.group(2)] = (m.group(1).strip(), m.group(3) or "")
        return out, checks

    def driver_log(self):
        try:
            with open(os.path.join(self.dir, "driver.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def assertPasses(self, out, checks, at_least):
        failed = {k: v for k, v in checks.items() if v[0] != "ok"}
        self.assertEqual(failed, {}, out.stdout + "\n" + out.stderr + "\n" + self.driver_log())
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        self.assertGreaterEqual(len(checks), at_least, out.stdout)
        self.assertRegex(out.stdout, rf"\n{len(checks)} passed, 0 failed\n")

    def exec_cmd(self, program):
        return (f"/usr/bin/python3 {program} --hook '/usr/bin/python3 {LAB_HOOK}' "
                f"--journal {os.path.join(self.dir, 'journal.json')} --max-in-flight 8")

    def exec_args(self):
        return ["--driver-name", "lab", "--zone", "zone-a", "--config", "capacity=4",
                "--secret", f"lab-password={LAB_PASSWORD}", "--capacity", "4"]

    def test_the_pool_driver_passes(self):
        machines = [(f"10.50.0.{i}", "zone-a") for i in range(1, 5)] + [("10.50.1.1", "zone-b")]
        pool = write_pool(os.path.join(self.dir, "pool.txt"), machines)
        cmd = (f"{pool_driver_binary()} --pool {pool} --state {os.path.join(self.dir, 'state')} "
               "--max-in-flight 8")
        out, checks = self.kit(cmd, "--driver-name", "pool", "--zone", "zone-a", "--capacity", "4")
        self.assertPasses(out, checks, 25)
        for reservation_check in ("reserve answers the reservation",
                                  "an instance launches into it, and counts as in use"):
            self.assertIn(reservation_check, checks)

    def test_the_python_driver_passes(self):
        env = {"LAB_STATE": os.path.join(self.dir, "lab.json")}
        out, checks = self.kit(self.exec_cmd(EXEC_DRIVER), *self.exec_args(), env=env)
        self.assertPasses(out, checks, 20)
        self.assertIn("note reservations: not declared by the driver, not checked", out.stdout)

    def test_a_driver_that_doubles_creates_fails(self):
        env = {"LAB_STATE": os.path.join(self.dir, "lab.json")}
        out, checks = self.kit(self.exec_cmd(DOUBLING_DRIVER), *self.exec_args(), env=env)
        self.assertEqual(out.returncode, 1, out.stdout + out.stderr)
        verdict, why = checks["create with the same idempotency key returns the same machine"]
        self.assertEqual(verdict, "FAIL", out.stdout)
        self.assertIn("another machine", why)
        # What it gets right still passes: the kit tells one failure from another.
        self.assertEqual(checks["it registers first, with its name, protocol version 1 and "
                                "limits"][0], "ok")
        self.assertRegex(out.stdout, r"\n\d+ passed, [1-9]\d* failed\n")

    def test_it_refuses_to_run_without_a_driver(self):
        out = subprocess.run([conformance_binary()], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("--driver-cmd is required", out.stderr)


if __name__ == "__main__":
    unittest.main()
