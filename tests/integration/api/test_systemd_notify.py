"""systemd's notify protocol, with a datagram socket standing in for systemd: READY=1 once the
service serves, WATCHDOG=1 at half of WATCHDOG_USEC from the event loop, STOPPING=1 on SIGTERM,
in that order; a stopped process sends no watchdog pings."""

import os
import signal
import socket
import tempfile
import time
import unittest

from cloudbrain_test import Database, Service, wait_until


class NotifyProtocol(unittest.TestCase):
    def test_ready_watchdog_stopping_in_order(self):
        tmp = tempfile.mkdtemp(prefix="cb-notify-")
        path = os.path.join(tmp, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        self.addCleanup(sock.close)
        db = Database()
        self.addCleanup(db.drop)
        service = Service(db, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"})
        messages = []  # (monotonic time, message), cleared between steps
        everything = []  # every message, in order


        def drain(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sock.settimeout(max(0.01, end - time.monotonic()))
                try:
                    data = sock.recv(4096)
                except socket.timeout:
                    break
                messages.append((time.monotonic(), data.decode()))
                everything.append(data.decode().split("\n")[0])

        service.start(wait=False)
        self.addCleanup(service.stop)
        wait_until(lambda: (drain(0.1), any("READY=1" in m for _, m in messages))[1], 60,
                   what="READY=1")
        self.assertEqual(service.request("GET", "/readyz", auth=False).status, 200)
        drain(1.5)
        pings = [t for t, m in messages if m == "WATCHDOG=1"]
        self.assertGreaterEqual(len(pings), 5, messages)  # every 0.2 s
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        self.assertLess(max(gaps), 0.4, gaps)

        # A process that does not run sends nothing; once it runs again the pings resume.
        service.proc.send_signal(signal.SIGSTOP)
        messages.clear()
        drain(1.0)
        self.assertEqual([m for _, m in messages], [])
        service.proc.send_signal(signal.SIGCONT)
        drain(0.6)
        self.assertIn("WATCHDOG=1", [m for _, m in messages])

        messages.clear()
        service.proc.send_signal(signal.SIGTERM)
        drain(2.0)
        self.assertEqual(service.proc.wait(30), 0)
        # In order: READY once, first; pings; STOPPING (a ping already on its way may follow).
        self.assertEqual(everything[0], "READY=1", everything[:5])
        self.assertEqual(everything.count("READY=1"), 1)
        stop = everything.index("STOPPING=1")
        self.assertEqual(set(everything[1:stop]), {"WATCHDOG=1"})
        self.assertLessEqual(len(everything[stop + 1:]), 1, everything[stop:])


if __name__ == "__main__":
    unittest.main()
