"""Support for cloudbrain's service-level tests: a private database per test class, the real
`cloudbrain` binary started with a generated configuration, tokens, and an HTTP client.

Standard library only. The suite's runner (tests/run-all.sh) provides, in the environment:
  CLOUDBRAIN_BIN                    the cloudbrain binary under test
  CLOUDBRAIN_TEST_ADMIN_URL         a PostgreSQL URL with the right to CREATE DATABASE
  CLOUDBRAIN_TEST_TEMPLATE          a database with the schema deployed, used as a template
A test fails (never skips) when one of them is missing.

With CLOUDBRAIN_TEST_VIA_PGBOUNCER=1 every Service reaches its database through a PgBouncer of
its own in transaction pooling mode (database-url, with db-prepared-statements = false), and
directly only for its coordination session (database-direct-url): the API suite runs so too.
"""

import base64
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse
import uuid


def require_env(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run the tests through tests/run-all.sh or ctest")
    return value


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def psql(url, sql, *extra):
    out = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url, "-c", sql, *extra],
                         check=True, capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


class Database:
    """A throwaway database cloned from the schema template (or, with empty=True, a database
    without any schema). `Database.attach(url)` wraps an existing database instead: drop() then
    leaves it alone."""

    def __init__(self, empty=False, admin_url=None):
        self.admin_url = admin_url or require_env("CLOUDBRAIN_TEST_ADMIN_URL")
        self.name = "t_" + uuid.uuid4().hex[:16]
        if empty:
            psql(self.admin_url, f'CREATE DATABASE "{self.name}"')
        else:
            template = require_env("CLOUDBRAIN_TEST_TEMPLATE")
            psql(self.admin_url, f'CREATE DATABASE "{self.name}" TEMPLATE "{template}"')
        parts = urllib.parse.urlsplit(self.admin_url)
        self.url = urllib.parse.urlunsplit(parts._replace(path="/" + self.name))
        self.owned = True

    @classmethod
    def attach(cls, url):
        db = cls.__new__(cls)
        db.admin_url = url
        db.name = urllib.parse.urlsplit(url).path.lstrip("/")
        db.url = url
        db.owned = False
        return db

    def query(self, sql):
        return psql(self.url, sql)

    def count_rows(self, *tables):
        """{table: row count}, read in one statement (one snapshot)."""
        tables = tables or ("instances", "jobs", "idempotency_keys")
        out = self.query("SELECT " + ", ".join(f"(SELECT count(*) FROM {t})" for t in tables))
        return dict(zip(tables, (int(n) for n in out.split("|"))))

    def drop(self):
        if not self.owned:
            return
        try:
            psql(self.admin_url, f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        except subprocess.CalledProcessError:
            pass


class PgBouncer:
    """Debian's PgBouncer in transaction pooling mode in front of the server of `url`, on a free
    loopback port. As root it switches to the user that runs the test PostgreSQL (PgBouncer
    refuses to run as root), and a watchdog ends it if the test process dies first."""

    def __init__(self, url):
        parts = urllib.parse.urlsplit(url)
        self.server_host = parts.hostname or "127.0.0.1"
        self.server_port = parts.port or 5432
        self.user = parts.username or "cloudbrain"
        self.dir = tempfile.mkdtemp(prefix="cb-pgbouncer-")
        os.chmod(self.dir, 0o755)
        self.port = None
        self.proc = None
        self.os_user = os.environ.get("CB_PG_OS_USER", "") if os.getuid() == 0 else ""

    def start(self):
        self.port = free_port()
        ini = os.path.join(self.dir, "pgbouncer.ini")
        users = os.path.join(self.dir, "users.txt")
        with open(users, "w") as f:
            f.write('"%s" ""\n' % self.user)
        with open(ini, "w") as f:
            f.write("\n".join([
                "[databases]",
                "* = host=%s port=%d" % (self.server_host, self.server_port),
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                "listen_port = %d" % self.port,
                "unix_socket_dir =",
                "auth_type = trust",
                "auth_file = " + users,
                "pool_mode = transaction",
                "default_pool_size = 20",
                "max_client_conn = 1000",
                # cloudbrain's connections ask for statement_timeout and friends in `options`,
                # which a pooler cannot keep per client: the server's own settings apply.
                "ignore_startup_parameters = options",
                "logfile = " + os.path.join(self.dir, "pgbouncer.log"),
                ""]))
        if self.os_user:
            subprocess.run(["chown", "-R", self.os_user, self.dir], check=True)
        cmd = ["pgbouncer", ini]
        if self.os_user:
            cmd = ["pgbouncer", "-u", self.os_user, ini]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     cwd=self.dir)
        # Ended with this process, however it ends.
        subprocess.Popen(["bash", "-c", 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; '
                          'kill "$2" 2>/dev/null', "watchdog", str(os.getpid()),
                          str(self.proc.pid)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError("pgbouncer exited: %s" % self.log_tail())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return True
            except OSError:
                return False
        wait_until(answers, 30, what="pgbouncer to listen")
        return self

    def url_for(self, url):
        """`url` (a database of the server behind this PgBouncer) through PgBouncer."""
        parts = urllib.parse.urlsplit(url)
        netloc = "%s@127.0.0.1:%d" % (parts.username or self.user, self.port)
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    def log_tail(self, n=40):
        try:
            with open(os.path.join(self.dir, "pgbouncer.log")) as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def via_pgbouncer():
    return os.environ.get("CLOUDBRAIN_TEST_VIA_PGBOUNCER") == "1"


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return f"<Response {self.status} {self.body[:300]!r}>"

class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cb-notify-")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []  # every datagram, in order

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                return

    def count(self, message, seconds):
        """How many datagrams equal to `message` arrive in the next `seconds`."""
        before = len(self.messages)
        self.drain(seconds)
        return self.messages[before:].count(message)

    def states(self):
        """The messages, watchdog pings aside, each as {KEY: VALUE}."""
        out = []
        for m in self.messages:
            fields = dict(line.split("=", 1) for line in m.split("\n") if "=" in line)
            if set(fields) != {"WATCHDOG"}:
                out.append(fields)
        return out

    def close(self):
        self.sock.close()


class Service:
    """The cloudbrain binary, serving on a free loopback port against `database`."""

    def __init__(self, database, providers=None, settings=None, workdir=None, env=None,
                 args=None):
        self.bin = require_env("CLOUDBRAIN_BIN")
        self.args = list(args or [])  # extra `serve` arguments, after --config
        self.database = database
        self.workdir = workdir or tempfile.mkdtemp(prefix="cloudbrain-test-")
        self.port = free_port()
        self.providers = providers if providers is not None else {
            "gce": {"type": "fake", "zones": "zone-a zone-b", "boot-delay": "50ms",
                    "rate-limit": "2000", "max-in-flight": "100"}}
        self.settings = {"reconcile-interval": "30s", "orphan-grace": "10m", "log-level": "info"}
        self.settings.update(settings or {})
        self.env = env or {}
        self.tls_ca = None  # a CA file: the service speaks HTTPS on its port (tls-cert)
        self.proc = None
        self.bouncer = None
        if via_pgbouncer():
            self.bouncer = PgBouncer(database.url).start()
        self.log_path = os.path.join(self.workdir, "cloudbrain.log")
        self.config_path = os.path.join(self.workdir, "cloudbrain.ini")
        self.write_config()

    def write_config(self):
        lines = [f"listen = 127.0.0.1:{self.port}", f"database-url = {self.database_url}"]
        if self.bouncer:
            lines += [f"database-direct-url = {self.database.url}",
                      "db-prepared-statements = false"]
        lines += [f"{k} = {v}" for k, v in self.settings.items()]
        for name, section in self.providers.items():
            lines.append(f"\n[provider.{name}]")
            lines += [f"{k} = {v}" for k, v in section.items()]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    @property
    def database_url(self):
        """What the request path connects to: the database, or PgBouncer in front of it."""
        return self.bouncer.url_for(self.database.url) if self.bouncer else self.database.url

    def start(self, wait=True):
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        env.update(self.env)
        self.log = open(self.log_path, "ab")
        # CLOUDBRAIN_TEST_WRAPPER, e.g. "gdb -q -batch -ex run -ex bt --args", runs the
        # binary under a debugger or profiler when a test needs looking into.
        wrapper = os.environ.get("CLOUDBRAIN_TEST_WRAPPER", "").split()
        self.proc = subprocess.Popen([*wrapper, self.bin, "serve", "--config", self.config_path,
                                      *self.args],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            wait_until(self.ready, 60, what="cloudbrain /readyz")
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"cloudbrain exited with {self.proc.returncode}:\n{self.log_tail()}")
        try:
            return self.request("GET", "/readyz", auth=False, timeout=2).status == 200
        except OSError:
            return False

    def stop(self, sig=signal.SIGTERM, timeout=60):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("cloudbrain did not stop in time")
        if self.proc:
            self.log.close()
        return self.proc.returncode if self.proc else None

    def close(self):
        """Stops the service and what it was given (PgBouncer)."""
        code = self.stop()
        if self.bouncer:
            self.bouncer.stop()
        return code

    def kill(self):
        return self.stop(signal.SIGKILL)

    def log_tail(self, n=60):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def log_lines(self):
        with open(self.log_path, "rb") as f:
            return [line.decode(errors="replace") for line in f.read().splitlines()]

    def cli(self, *args, check=True):
        env = dict(os.environ)
        env["DATABASE_URL"] = self.database.url
        out = subprocess.run([self.bin, *args], capture_output=True, text=True, env=env, timeout=60)
        if check and out.returncode != 0:
            raise AssertionError(f"cloudbrain {' '.join(args)} failed: {out.stderr}")
        return out

    def create_token(self, description="test", *options):
        """A new token; `options` such as "--scope", "all" or "--role", "admin"."""
        out = self.cli("token", "create", *options, description)
        line = out.stdout.strip()
        assert line.startswith("generated token: "), line
        return line[len("generated token: "):]

    @property
    def admin_port(self):
        """The port of `admin-listen`, which the test must have set."""
        listen = self.settings.get("admin-listen")
        assert listen, "this service has no admin-listen"
        return int(listen.rsplit(":", 1)[1])

    def connection(self, timeout=30):
        if self.tls_ca:
            ctx = ssl.create_default_context(cafile=self.tls_ca)
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=ctx)
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, auth=True, token=None, timeout=30,
                raw=None, admin=False):
        """A request to `listen`, or with admin=True to `admin-listen` (plain HTTP, no token)."""
        if admin:
            auth = False
            conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        else:
            conn = self.connection(timeout)
        try:
            hdrs = dict(headers or {})
            if auth:
                hdrs.setdefault("Authorization", "token " + (token or self.token))
            data = raw
            if body is not None:
                data = json.dumps(body).encode()
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read().decode())
        finally:
            conn.close()

    _token_lock = threading.Lock()

    @property
    def token(self):
        """The token requests use by default: one, made on first use. Threads that first ask at
        the same time get the same one (a client token sees only what it created)."""
        with self._token_lock:
            if not hasattr(self, "_token"):
                self._token = self.create_token()
            return self._token

    @token.setter
    def token(self, value):
        """The token requests use by default from now on."""
        self._token = value

    def url(self, path=""):
        scheme = "https" if self.tls_ca else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"


class ServiceTestCase(unittest.TestCase):
    """One database and one running service per test class."""

    providers = None
    settings = None
    env = None  # extra environment for the service

    @classmethod
    def service_providers(cls):
        """The [provider.NAME] sections; override to build them when the class starts."""
        return cls.providers

    @classmethod
    def setUpClass(cls):
        cls.db = Database()
        providers = cls.service_providers()
        cls.service = Service(cls.db, providers=providers, settings=cls.settings, env=cls.env)
        try:
            cls.service.start()
        except Exception:
            cls.db.drop()
            raise

    @classmethod
    def tearDownClass(cls):
        code = cls.service.close()
        cls.db.drop()
        if code not in (0, None):
            raise AssertionError(f"cloudbrain exited with {code} on SIGTERM:\n{cls.service.log_tail()}")

    def create(self, **fields):
        body = {"provider": "gce", "image": "image-2016-01-01"}
        body.update(fields)
        r = self.service.request("POST", "/instances", body)
        self.assertEqual(r.status, 201, r)
        return r.json()

    def wait_state(self, instance_id, state, timeout=30):
        def check():
            r = self.service.request("GET", f"/instances/{instance_id}")
            return r.json() if r.status == 200 and r.json()["state"] == state else None
        return wait_until(check, timeout, what=f"instance {instance_id} to be {state}")

    def assertProblem(self, r, status, code=None):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.header("Content-Type"), "application/problem+json", r)
        p = r.json()
        for key in ("type", "title", "status", "detail", "code", "errors"):
            self.assertIn(key, p)
        self.assertEqual(p["status"], status)
        self.assertIsInstance(p["errors"], list)
        self.assertTrue(p["errors"])
        if code:
            self.assertEqual(p["code"], code, p)
        return p


def run_serve(args, env=None, timeout=60):
    """Runs `cloudbrain serve ARGS...` to completion (killed after `timeout` seconds) and returns
    (returncode, stdout, stderr, seconds); returncode is None when it had to be killed."""
    bin_ = require_env("CLOUDBRAIN_BIN")
    full_env = dict(os.environ)
    full_env.pop("DATABASE_URL", None)
    full_env.update(env or {})
    started = time.monotonic()
    proc = subprocess.Popen([bin_, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=full_env)
    try:
        out, err = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        code = None
    return code, out, err, time.monotonic() - started


PG_SH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pg.sh")


class PgCluster:
    """A private throwaway PostgreSQL cluster (tests/support/pg.sh), for tests that stop and
    start the database under a running service. A watchdog removes it if this process dies."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cb-pg-")
        os.chmod(self.dir, 0o755)
        self.port = None
        self.os_user = ""
        self.env = {}

    def _bash(self, script, *args, timeout=120):
        env = dict(os.environ)
        env.update(self.env)
        out = subprocess.run(["bash", "-c", f'source "{PG_SH}"; ' + script, "pg-cluster", *args],
                             capture_output=True, text=True, env=env, timeout=timeout)
        if out.returncode != 0:
            raise AssertionError(f"pg.sh failed ({script}): {out.stderr}")
        return out.stdout

    def start(self):
        out = self._bash('cb_pg_start "$1" || exit 1; '
                         'echo "$CB_PG_PORT $CB_PG_OS_USER"', self.dir)
        words = out.split()
        self.port = int(words[0])
        self.os_user = words[1] if len(words) > 1 else ""
        self.env = {"CB_PG_DIR": os.path.realpath(self.dir), "CB_PG_PORT": str(self.port),
                    "CB_PG_OS_USER": self.os_user}
        if not getattr(self, "_watched", False):
            self._bash('cb_pg_watchdog "$1" "$2"', str(os.getpid()), self.dir)
            self._watched = True
        return self

    def stop(self, mode="fast"):
        self._bash('cb_pg_stop "$1"', mode)

    def url(self, database="cloudbrain"):
        return f"postgresql://cloudbrain@127.0.0.1:{self.port}/{database}"

    def deploy_schema(self, database="cloudbrain"):
        self._bash('cb_schema_deploy "$1" >/dev/null', self.url(database), timeout=300)

    def destroy(self):
        try:
            self._bash('cb_pg_destroy "$1"', self.dir)
        except (AssertionError, subprocess.TimeoutExpired):
            pass
