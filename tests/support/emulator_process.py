"""A cloud emulator (tests/emulators/<cloud>/*.py) as a child process of a test: started on port 0
with a port file, told to exit with its parent, stopped by its own PID. Every emulator takes
`--port 0 --port-file F --parent-pid P` and serves its control API under /_emulator/.

stdlib only.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
GCE_EMULATOR = os.path.join(REPO, 'tests', 'emulators', 'gce', 'gce_emulator.py')


def emulator_path(cloud, script):
    """tests/emulators/<cloud>/<script>."""
    return os.path.join(REPO, 'tests', 'emulators', cloud, script)


class EmulatorProcess:
    """One emulator process, started with port 0 and a port file; stopped by its own PID."""

    def __init__(self, *extra, workdir=None, script=GCE_EMULATOR):
        self.extra = list(extra)
        self.script = script
        self.dir = workdir or tempfile.mkdtemp(prefix='emulator-')
        self.proc = None
        self.port = None
        self.scheme = 'https' if '--tls-cert' in self.extra else 'http'
        self.ssl_ctx = None

    def start(self):
        pf = os.path.join(self.dir, 'port')
        if os.path.exists(pf):
            os.remove(pf)
        self.log = open(os.path.join(self.dir, 'emulator.log'), 'ab')
        self.proc = subprocess.Popen([sys.executable, self.script, '--port', '0', '--port-file', pf,
                                      '--parent-pid', str(os.getpid())] + self.extra,
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 30
        while time.time() < deadline:
            if os.path.exists(pf):
                with open(pf) as f:
                    txt = f.read().strip()
                if txt:
                    self.port = int(txt)
                    return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError('emulator did not start; see %s/emulator.log' % self.dir)

    def log_text(self):
        try:
            with open(os.path.join(self.dir, 'emulator.log'), errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()

    @property
    def base(self):
        return '%s://127.0.0.1:%d' % (self.scheme, self.port)

    def request(self, method, path, body=None, headers=None, timeout=15, raw_body=None):
        """Returns (status, parsed JSON or text, headers). Connection errors propagate."""
        if self.scheme == 'https':
            conn = http.client.HTTPSConnection('127.0.0.1', self.port, timeout=timeout,
                                               context=self.ssl_ctx)
        else:
            conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=timeout)
        hdrs = dict(headers or {})
        data = raw_body
        if body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault('Content-Type', 'application/json')
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = resp.read()
            ctype = resp.getheader('Content-Type', '')
            if 'json' in ctype and payload:
                payload = json.loads(payload)
            else:
                payload = payload.decode('utf-8', 'replace')
            return resp.status, payload, resp
        finally:
            conn.close()

    def control(self, method, path, body=None):
        status, obj, _ = self.request(method, '/_emulator/' + path, body)
        if status != 200:
            raise AssertionError('control %s %s -> %s %s' % (method, path, status, obj))
        return obj
