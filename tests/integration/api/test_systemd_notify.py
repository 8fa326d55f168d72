"""systemd's notify protocol, with a datagram socket standing in for systemd: READY=1 once the
service serves, WATCHDOG=1 at half of WATCHDOG_USEC from the event loop, STOPPING=1 on SIGTERM,
in that order; a stopped process sends no watchdog pings, and neither does one whose event loop
threads alone are wedged while its other threads run on."""

import ctypes
import os
import signal
import socket
import tempfile
import time
import unittest

from cloudbrain_test import Database, NotifySocket, Service, wait_until


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


PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000


class ThreadFreezer:
    """Stops single threads of another process with ptrace (PTRACE_SEIZE + PTRACE_INTERRUPT
    stop the one thread, not its process) and lets them go again."""

    def __init__(self):
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p,
                                     ctypes.c_void_p]
        self.libc.ptrace.restype = ctypes.c_long
        self.stopped = []

    def ptrace(self, request, tid):
        if self.libc.ptrace(request, tid, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"ptrace({request:#x}, {tid}): {os.strerror(err)}")

    def freeze(self, tid):
        self.ptrace(PTRACE_SEIZE, tid)
        self.stopped.append(tid)
        self.ptrace(PTRACE_INTERRUPT, tid)
        os.waitpid(tid, WALL)

    def thaw(self):
        while self.stopped:
            self.ptrace(PTRACE_DETACH, self.stopped.pop())


def threads_of(pid):
    """{tid: (name, state)} from /proc."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        out[int(tid)] = (name, stat[stat.rindex(")") + 2])
    return out


class WedgedLoop(unittest.TestCase):
    def test_a_wedged_event_loop_stops_the_watchdog(self):
        notify = NotifySocket()
        self.addCleanup(notify.close)
        db = Database()
        self.addCleanup(db.drop)
        service = Service(db, settings={"threads": "2"},
                          env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "400000"})
        service.start()
        self.addCleanup(service.stop)

        def pings(seconds):
            return notify.count("WATCHDOG=1", seconds)

        self.assertGreaterEqual(pings(1.0), 3)
        pid = service.proc.pid
        threads = threads_of(pid)
        # The event loop runs on the main thread and the threads named cb-loop (threads = 2).
        loop = [tid for tid, (name, _) in threads.items() if tid == pid or name == "cb-loop"]
        others = [tid for tid in threads if tid not in loop]
        self.assertEqual(len(loop), 2, threads)
        self.assertTrue(others, threads)  # the blocking pool, the log writer, ...

        freezer = ThreadFreezer()
        self.addCleanup(freezer.thaw)
        for tid in loop:
            freezer.freeze(tid)
        pings(0.1)  # a ping already sent
        self.assertEqual(pings(1.2), 0)
        now = threads_of(pid)
        self.assertTrue(all(now[tid][1] == "t" for tid in loop), now)  # stopped by us
        self.assertTrue(all(now[tid][1] != "t" for tid in others), now)  # still running
        self.assertIsNone(service.proc.poll())

        freezer.thaw()
        self.assertGreaterEqual(pings(1.0), 2)
        self.assertEqual(service.request("GET", "/readyz", auth=False).status, 200)
        self.assertEqual(service.stop(), 0)


if __name__ == "__main__":
    unittest.main()
