"""What a machine running cloudbrain gets (deploy/): the systemd units, the manual and its man
page, the example configuration, the schema deploy script, and the .deb that carries them.

Besides what tests/run-all.sh exports, CMake gives every case (tests/integration/deploy):
  CLOUDBRAIN_BUILD_DIR    the build directory (cmake --install and cpack run from it)
  CLOUDBRAIN_MAN_PAGE     cloudbrain.1.gz as the build generated it
  CLOUDBRAIN_VERSION      the project's version
The package test builds the .deb from the build under test (the sanitizer build in CI: the same
install rules and CPack configuration as a release build, only a bigger binary), and installs it
into a private root, never onto this machine.
"""

import gzip
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from cloudbrain_test import Database, psql, require_env

UNITS = ("cloudbrain.service", "cloudbrain-schema.service")


def run(args, timeout=120, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


def source_dir():
    return require_env("CLOUDBRAIN_SOURCE_DIR")


def binary():
    return require_env("CLOUDBRAIN_BIN")


def install_into(root):
    """`cmake --install` of the build into ROOT (DESTDIR), as the package is staged."""
    r = run(["cmake", "--install", require_env("CLOUDBRAIN_BUILD_DIR"), "--prefix", "/usr"],
            env={**os.environ, "DESTDIR": root}, timeout=300)
    if r.returncode != 0:
        raise AssertionError(f"cmake --install failed:\n{r.stdout}\n{r.stderr}")


class Units(unittest.TestCase):
    """systemd-analyze verify and security on the installed units. verify checks that every
    command exists and every man: page of Documentation= can be found, so the units are checked
    as installed into a private root, with their /usr paths pointed at that root."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cb-units-")
        cls.root = os.path.join(cls.tmp, "root")
        install_into(cls.root)
        cls.units = os.path.join(cls.tmp, "units")
        os.mkdir(cls.units)
        for unit in UNITS:
            with open(os.path.join(cls.root, "lib/systemd/system", unit)) as f:
                text = f.read()
            text = text.replace("/usr/bin/cloudbrain", cls.root + "/usr/bin/cloudbrain")
            text = text.replace("/usr/lib/cloudbrain/", cls.root + "/usr/lib/cloudbrain/")
            with open(os.path.join(cls.units, unit), "w") as f:
                f.write(text)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verify(self, *units):
        # The installed man page first, then the system's (sqitch-deploy(3pm)).
        env = {**os.environ, "MANPATH": os.path.join(self.root, "usr/share/man") + ":"}
        return run(["systemd-analyze", "verify", *units], cwd=self.units, env=env)

    def test_units_verify_without_a_word(self):
        r = self.verify(*UNITS)
        self.assertEqual(r.returncode, 0, r.stderr)
        # Unknown keys and bad values are only warnings: any output at all is a failure.
        self.assertEqual(r.stdout + r.stderr, "")

    def test_verify_catches_a_bad_unit(self):
        # The check above can fail: a misspelt key and a missing command are reported.
        with open(os.path.join(self.units, "cloudbrain.service")) as f:
            text = f.read()
        bad = text.replace("ProtectSystem=", "ProtectSystm=").replace(
            self.root + "/usr/bin/cloudbrain", "/nonexistent/cloudbrain")
        with open(os.path.join(self.units, "bad.service"), "w") as f:
            f.write(bad)
        try:
            r = self.verify("bad.service")
            out = r.stdout + r.stderr
            self.assertIn("ProtectSystm", out)
            self.assertIn("/nonexistent/cloudbrain", out)
            self.assertNotEqual(r.returncode, 0)
        finally:
            os.remove(os.path.join(self.units, "bad.service"))

    def exposure(self, unit):
        r = run(["systemd-analyze", "security", "--offline=true", "--no-pager", unit],
                cwd=self.units)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", r.stdout)
        self.assertIsNotNone(m, r.stdout)
        return float(m.group(1)), r.stdout

    def test_service_exposure_at_most_2(self):
        level, out = self.exposure("cloudbrain.service")
        self.assertLessEqual(level, 2.0, out)

    def test_schema_unit_exposure_at_most_2(self):
        level, out = self.exposure("cloudbrain-schema.service")
        self.assertLessEqual(level, 2.0, out)

    def test_service_settings(self):
        # What the rest of the system relies on: the service, its reload and the schema unit.
        with open(os.path.join(self.units, "cloudbrain.service")) as f:
            text = f.read()
        for line in ("Type=notify", "NotifyAccess=main", "ExecReload=/bin/kill -HUP $MAINPID",
                     "Requires=cloudbrain-schema.service", "DynamicUser=yes",
                     "ProtectSystem=strict", "CapabilityBoundingSet=\n",
                     "LoadCredential=cloud:/etc/cloudbrain/credentials"):
            self.assertIn(line, text)
        m = re.search(r"^WatchdogSec=(\d+)s$", text, re.M)
        self.assertIsNotNone(m)
        self.assertGreater(int(m.group(1)), 0)
        with open(os.path.join(self.units, "cloudbrain-schema.service")) as f:
            schema = f.read()
        self.assertIn("Type=oneshot", schema)
        self.assertIn("Before=cloudbrain.service", schema)


class Manual(unittest.TestCase):
    HEADINGS = ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "SERVE OPTIONS",
                "CONFIGURATION FILE", "PROVIDER TYPES", "ENVIRONMENT", "SIGNALS", "FILES",
                "EXIT STATUS", "EXAMPLES", "SEE ALSO")

    def test_help_prints_the_manual(self):
        r = run([binary(), "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        headings = [line for line in r.stdout.splitlines() if line and not line[0].isspace()]
        self.assertEqual(tuple(headings), self.HEADINGS)
        serve = run([binary(), "serve", "--help"])
        self.assertEqual(serve.returncode, 0, serve.stderr)
        # Every option of serve is in the whole manual, too.
        options = re.findall(r"^    (--[a-z-]+)", serve.stdout, re.M)
        self.assertIn("--check-config", options)
        self.assertIn("--listen", options)
        self.assertGreater(len(options), 15)
        for option in options:
            self.assertIn("\n    " + option, r.stdout)

    def test_serve_help_is_the_serve_part(self):
        r = run([binary(), "serve", "--help"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("NAME\n    cloudbrain serve - "), r.stdout[:200])
        for heading in ("SYNOPSIS", "OPTIONS", "CONFIGURATION FILE", "ENVIRONMENT", "SIGNALS"):
            self.assertIn("\n" + heading + "\n", r.stdout)
        self.assertNotIn("\nEXIT STATUS\n", r.stdout)

    def test_no_command_prints_the_synopsis_and_fails(self):
        r = run([binary()])
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertIn("cloudbrain serve [--config FILE]", r.stderr)
        self.assertIn("cloudbrain --help", r.stderr)

    def test_man_renders_the_page_without_warnings(self):
        page = require_env("CLOUDBRAIN_MAN_PAGE")
        env = {**os.environ, "MANWIDTH": "100", "MAN_KEEP_FORMATTING": ""}
        r = run(["man", "--warnings", "-l", page], env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        text = r.stdout.replace("\u2010", "-").replace("\u2212", "-")
        for heading in self.HEADINGS:
            self.assertRegex(text, r"(?m)^" + re.escape(heading) + "$")
        self.assertIn("--check-config", text)
        self.assertIn("${CREDENTIALS_DIRECTORY}/cloud_gce-staging.json", text)
        self.assertRegex(text, r"cloudbrain " + re.escape(require_env("CLOUDBRAIN_VERSION")))

    def test_page_is_generated_from_this_help(self):
        # The page in the build is what the generator makes of this binary's --help, byte for
        # byte (gzip without a name or time stamp).
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "cloudbrain.1.gz")
            r = run(["python3", os.path.join(source_dir(), "deploy/man-from-help.py"),
                     "--version", require_env("CLOUDBRAIN_VERSION"), "--binary", binary(),
                     "--output", out])
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out, "rb") as a, open(require_env("CLOUDBRAIN_MAN_PAGE"), "rb") as b:
                self.assertEqual(a.read(), b.read())
        with gzip.open(require_env("CLOUDBRAIN_MAN_PAGE"), "rt") as f:
            troff = f.read()
        self.assertIn(".TH CLOUDBRAIN 1", troff)
        self.assertIn(".SH SIGNALS", troff)

    def test_generator_refuses_an_unknown_layout(self):
        r = run(["python3", os.path.join(source_dir(), "deploy/man-from-help.py"),
                 "--version", "1"], input="NAME\n    x - y\nODD\n      six spaces\n")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("unexpected indentation", r.stderr)


class ExampleConfig(unittest.TestCase):
    """deploy/cloudbrain.conf.example shows every key, commented out; with every "# key = value"
    line uncommented it is a configuration that `serve --check-config` accepts."""

    KEY_LINE = re.compile(r"^# ([a-z][a-z0-9-]* = .*|\[provider\.[a-z0-9-]+\])$")

    @classmethod
    def setUpClass(cls):
        with open(os.path.join(source_dir(), "deploy/cloudbrain.conf.example")) as f:
            cls.example = f.read()
        cls.uncommented = "\n".join(
            cls.KEY_LINE.sub(r"\1", line) for line in cls.example.splitlines()) + "\n"

    def check(self, text, env_extra=None):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "cloudbrain.conf")
            with open(path, "w") as f:
                f.write(text)
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith("CLOUDBRAIN_") and k not in ("DATABASE_URL",
                                                                     "CREDENTIALS_DIRECTORY")}
            env.update(env_extra or {})
            return run([binary(), "serve", "--config", path, "--check-config"], env=env)

    def sections(self, text):
        """{section name ('' for the top): [keys]} of an INI text."""
        out, current = {"": []}, ""
        for line in text.splitlines():
            m = re.match(r"^\[(.+)\]$", line)
            if m:
                current = m.group(1)
                out[current] = []
            elif re.match(r"^[a-z][a-z0-9-]* = ", line):
                out[current].append(line.split(" = ")[0])
        return out

    def test_every_key_uncommented_is_a_good_configuration(self):
        # A value "@${CREDENTIALS_DIRECTORY}/NAME" is read at start: those files are there, as
        # the unit's LoadCredential= puts them.
        with tempfile.TemporaryDirectory() as credentials:
            named = re.findall(r"@\$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)", self.uncommented)
            self.assertTrue(named)
            for name in named:
                with open(os.path.join(credentials, name), "w") as f:
                    f.write("not-a-real-secret\n")
            # tls-cert and tls-key are read and checked too: a real pair.
            cert = re.search(r"^tls-cert = \$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)$",
                             self.uncommented, re.M)
            key = re.search(r"^tls-key = \$\{CREDENTIALS_DIRECTORY\}/([\w.-]+)$",
                            self.uncommented, re.M)
            self.assertTrue(cert and key)
            run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=cloudbrain",
                 "-keyout", os.path.join(credentials, key.group(1)),
                 "-out", os.path.join(credentials, cert.group(1))], check=True)
            r = self.check(self.uncommented, {"CREDENTIALS_DIRECTORY": credentials})
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("listen 127.0.0.1:8080 (HTTPS)", r.stdout)
        self.assertIn("fake (fake)", r.stdout)
        self.assertIn("gce-prod (gce)", r.stdout)
        self.assertIn("aws-eu (aws)", r.stdout)
        self.assertIn("azure-prod (azure)", r.stdout)
        self.assertIn("oci-prod (oci)", r.stdout)
        self.assertIn("lab (external)", r.stdout)

    def test_the_gce_credentials_need_the_credentials_directory(self):
        r = self.check(self.uncommented)
        self.assertEqual(r.returncode, 2)
        self.assertIn("names ${CREDENTIALS_DIRECTORY}, which is not set", r.stderr)

    def test_as_installed_every_key_is_commented_out(self):
        self.assertEqual(self.sections(self.example), {"": []})
        r = self.check(self.example, {"DATABASE_URL": "postgresql://x@127.0.0.1/y"})
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0 provider(s)", r.stdout)

    def test_every_global_key_is_shown(self):
        serve = run([binary(), "serve", "--help"])
        options = set(re.findall(r"^    --([a-z-]+) [A-Z]", serve.stdout, re.M)) - {"config"}
        self.assertGreater(len(options), 15)
        self.assertEqual(options, set(self.sections(self.uncommented)[""]))

    def test_every_provider_key_is_shown(self):
        # The loader names every key a type knows when it meets one it does not.
        shown = self.sections(self.uncommented)
        common = {"type", "zones", "rate-limit", "max-in-flight", "endpoint",
                  "max-reserved-instances", "max-reservation-duration",
                  "standard-price-per-hour", "premium-price-per-hour", "reserved-price-per-hour"}
        for section, type_ in (("provider.fake", "fake"), ("provider.gce-prod", "gce"),
                               ("provider.aws-eu", "aws"), ("provider.azure-prod", "azure"),
                               ("provider.oci-prod", "oci")):
            text = f"database-url = postgresql://x@127.0.0.1/y\n[{section}]\ntype = {type_}\n" \
                   "no-such-key = 1\n"
            r = self.check(text)
            self.assertEqual(r.returncode, 2)
            m = re.search(r"\(known: ([a-z, -]+)\)", r.stderr)
            self.assertIsNotNone(m, r.stderr)
            known = set(m.group(1).split(", ")) | common
            if type_ == "fake":
                known.discard("endpoint")  # a fake cloud has no API to point at
            if type_ == "oci":
                # The alternatives to the key fields, which one section cannot have together
                # with them, and a pass phrase, which this file must not hold: in its prose.
                known -= {"config-file", "profile", "pass-phrase"}
                for key in ("config-file", "profile", "pass-phrase"):
                    self.assertIn(key, self.example)
            self.assertEqual(known, set(shown[section]), section)


class SchemaDeploy(unittest.TestCase):
    """deploy/cloudbrain-schema-deploy, which cloudbrain-schema.service runs, against a fresh
    database of the suite's PostgreSQL."""

    def setUp(self):
        self.db = Database(empty=True)
        self.tmp = tempfile.mkdtemp(prefix="cb-schema-")
        self.config = os.path.join(self.tmp, "cloudbrain.conf")
        with open(self.config, "w") as f:
            f.write("# the top\nlisten = 127.0.0.1:8080\n"
                    f"database-url = {self.db.url}  # where the service keeps its state\n"
                    "[provider.fake]\ntype = fake\ndatabase-url = postgresql://not@this/one\n")

    def tearDown(self):
        self.db.drop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def deploy(self, **env_extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("DATABASE_URL", "CLOUDBRAIN_DATABASE_URL", "CLOUDBRAIN_CONFIG")}
        env["CLOUDBRAIN_SCHEMA_DIR"] = os.path.join(source_dir(), "schema")
        env.update(env_extra)
        return run([os.path.join(source_dir(), "deploy/cloudbrain-schema-deploy"), self.config],
                   env=env, timeout=300)

    def planned_changes(self):
        with open(os.path.join(source_dir(), "schema/sqitch.plan")) as f:
            return [line.split()[0] for line in f
                    if line.strip() and not line.startswith(("%", "#", "@"))]

    def deployed_changes(self):
        out = psql(self.db.url, "SELECT change FROM sqitch.changes WHERE project = 'cloudbrain' "
                                "ORDER BY committed_at")
        return out.split("\n") if out else []

    def test_deploys_the_schema_of_the_configured_database_once(self):
        r = self.deploy()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        planned = self.planned_changes()
        self.assertGreater(len(planned), 3)
        self.assertEqual(self.deployed_changes(), planned)
        self.assertEqual(psql(self.db.url, "SELECT to_regclass('public.instances') IS NOT NULL"),
                         "t")
        # Before every start: a second run finds nothing to do and succeeds.
        again = self.deploy()
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertEqual(self.deployed_changes(), planned)

    def test_the_environment_wins_over_the_file(self):
        other = Database(empty=True)
        try:
            r = self.deploy(DATABASE_URL=other.url)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(psql(other.url, "SELECT count(*) FROM sqitch.changes"),
                             str(len(self.planned_changes())))
            self.assertEqual(psql(self.db.url, "SELECT to_regnamespace('sqitch') IS NULL"), "t")
        finally:
            other.drop()

    def test_no_database_and_a_bad_url_are_named_without_the_password(self):
        with open(self.config, "w") as f:
            f.write("listen = 127.0.0.1:8080\n")
        r = self.deploy()
        self.assertEqual(r.returncode, 2)
        self.assertIn("no database", r.stderr)
        r = self.deploy(CLOUDBRAIN_DATABASE_URL="mysql://user:s3cret@127.0.0.1/db")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a postgresql:// URL", r.stderr)
        self.assertNotIn("s3cret", r.stdout + r.stderr)


class Package(unittest.TestCase):
    """cpack builds the .deb; dpkg installs it into a private root and lists what it put there."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cb-deb-")
        r = run(["cpack", "--config",
                 os.path.join(require_env("CLOUDBRAIN_BUILD_DIR"), "CPackConfig.cmake"),
                 "-B", cls.tmp], timeout=600)
        if r.returncode != 0:
            raise AssertionError(f"cpack failed:\n{r.stdout}\n{r.stderr}")
        debs = [f for f in os.listdir(cls.tmp) if f.endswith(".deb")]
        if len(debs) != 1:
            raise AssertionError(f"cpack made {debs}")
        cls.deb = os.path.join(cls.tmp, debs[0])
        # A fresh dpkg database in a private root: nothing of this machine's is touched.
        cls.root = os.path.join(cls.tmp, "root")
        for d in ("info", "updates", "triggers"):
            os.makedirs(os.path.join(cls.root, "var/lib/dpkg", d))
        for f in ("status", "available"):
            open(os.path.join(cls.root, "var/lib/dpkg", f), "w").close()
        # --force-depends: the private root's dpkg database has none of the dependencies (they
        # are checked against this machine's packages in test_dependencies_exist instead).
        # --force-script-chrootless: the root has no shell to chroot into; dpkg sets DPKG_ROOT,
        # and the maintainer scripts then leave systemctl alone.
        r = run(["dpkg", "--root=" + cls.root, "--force-not-root", "--force-depends",
                 "--force-script-chrootless", "--log=/dev/null", "-i", cls.deb], timeout=300)
        if r.returncode != 0:
            raise AssertionError(f"dpkg -i failed:\n{r.stdout}\n{r.stderr}")
        cls.install_output = r.stdout + r.stderr

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def dpkg(self, *args):
        r = run(["dpkg", "--root=" + self.root, *args])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout

    def field(self, name):
        r = run(["dpkg-deb", "-f", self.deb, name])
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def test_files_of_the_package(self):
        files = set(self.dpkg("-L", "cloudbrain").split("\n"))
        for path in ("/usr/bin/cloudbrain", "/usr/bin/cloudbrain-create-token",
                     "/lib/systemd/system/cloudbrain.service",
                     "/lib/systemd/system/cloudbrain-schema.service",
                     "/usr/lib/cloudbrain/cloudbrain-schema-deploy",
                     "/usr/share/man/man1/cloudbrain.1.gz",
                     "/usr/share/doc/cloudbrain/examples/cloudbrain.conf.example",
                     "/etc/cloudbrain/cloudbrain.conf", "/etc/cloudbrain/credentials",
                     "/usr/share/cloudbrain/schema/sqitch.plan",
                     "/usr/share/cloudbrain/schema/sqitch.conf"):
            self.assertIn(path, files)
        # The whole Sqitch project: every file of schema/.
        schema = os.path.join(source_dir(), "schema")
        for dirpath, _, names in os.walk(schema):
            for name in names:
                rel = os.path.relpath(os.path.join(dirpath, name), schema)
                self.assertIn("/usr/share/cloudbrain/schema/" + rel, files)
        status = self.dpkg("-s", "cloudbrain")
        self.assertIn("Status: install ok installed", status)

    def test_installed_files(self):
        bin_ = os.path.join(self.root, "usr/bin/cloudbrain")
        r = run([bin_, "--version"])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "cloudbrain " + require_env("CLOUDBRAIN_VERSION"))
        self.assertEqual(os.readlink(os.path.join(self.root, "usr/bin/cloudbrain-create-token")),
                         "cloudbrain")
        self.assertTrue(os.access(os.path.join(self.root,
                                               "usr/lib/cloudbrain/cloudbrain-schema-deploy"),
                                  os.X_OK))
        creds = os.stat(os.path.join(self.root, "etc/cloudbrain/credentials"))
        self.assertEqual(creds.st_mode & 0o777, 0o700)
        with gzip.open(os.path.join(self.root, "usr/share/man/man1/cloudbrain.1.gz"), "rt") as f:
            self.assertIn(".TH CLOUDBRAIN 1", f.read())
        for unit in UNITS:
            with open(os.path.join(self.root, "lib/systemd/system", unit)) as a, \
                 open(os.path.join(source_dir(), "deploy/systemd", unit)) as b:
                self.assertEqual(a.read(), b.read())

    def test_control_fields(self):
        info = run(["dpkg-deb", "-I", self.deb])
        self.assertEqual(info.returncode, 0, info.stderr)
        for name in ("Package: cloudbrain", "Version: " + require_env("CLOUDBRAIN_VERSION"),
                     "Architecture: amd64", "Maintainer:", "Description:", "Depends:",
                     "conffiles", "postinst", "prerm", "postrm"):
            self.assertIn(name, info.stdout)
        depends = self.field("Depends")
        for lib in ("libpq5", "libssl3", "libboost-json1.81.0", "libboost-url1.81.0",
                    "libboost-program-options1.81.0", "libscrypt0", "sqitch", "libdbd-pg-perl"):
            self.assertRegex(depends, r"(^|, )" + re.escape(lib) + r"( |,|$)")
        conffiles = run(["dpkg-deb", "-I", self.deb, "conffiles"])
        self.assertEqual(conffiles.stdout.split(), ["/etc/cloudbrain/cloudbrain.conf"])

    def test_dependencies_exist(self):
        # Every dependency is a package this (bookworm) machine has, at a version that satisfies
        # it: the names dpkg-shlibdeps and the CMake file give are real.
        for dep in self.field("Depends").split(", "):
            m = re.fullmatch(r"([a-z0-9.+-]+)(?: \(([<>=]+) ([^)]+)\))?", dep)
            self.assertIsNotNone(m, dep)
            name, op, version = m.groups()
            r = run(["dpkg-query", "-W", "-f=${Version}", name])
            self.assertEqual(r.returncode, 0, f"{name}: {r.stderr}")
            if op:
                ops = {">=": "ge", "<=": "le", ">>": "gt", "<<": "lt", "=": "eq"}
                ok = run(["dpkg", "--compare-versions", r.stdout, ops[op], version])
                self.assertEqual(ok.returncode, 0, f"{name} {r.stdout} {op} {version}")

    def test_install_ran_the_scripts_without_systemctl(self):
        self.assertIn("Setting up cloudbrain", self.install_output)
        self.assertNotIn("systemctl", self.install_output)


if __name__ == "__main__":
    unittest.main()
