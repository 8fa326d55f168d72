"""HTTPS on the API listener (tls-cert, tls-key) against the real binary, checked with the tools
operators use: curl and openssl s_client. TLS 1.2 and 1.3 are served and 1.1 is not; plain
HTTP sent to the port gets a clear 400 instead of a hang or garbage; the API works through
curl as a client would call it; SIGHUP serves a renewed certificate from the next connection
and keeps the running one when the new files are bad; a wrong configuration stops `serve`
with a message naming the file.

stdlib plus Debian's openssl and curl; tests/run-all.sh provides the binary and the database.
"""
import hashlib
import json
import os
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from cloudbrain_test import Database, Service, ServiceTestCase, wait_until


def make_cert(directory, name, common_name):
    """A self-signed certificate for 127.0.0.1 and its key; returns (cert path, key path)."""
    cert = os.path.join(directory, name + ".crt")
    key = os.path.join(directory, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=" + common_name,
                    "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def der_fingerprint(pem_path):
    with open(pem_path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return hashlib.sha256(der).hexdigest()


def served_fingerprint(port):
    """The SHA-256 of the certificate a new connection is served (not verified: compared)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


class TlsCase(ServiceTestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="cloudbrain-tls-")
        cls.cert, cls.key = make_cert(cls.dir, "api", "cloudbrain-test")
        cls.settings = {"tls-cert": cls.cert, "tls-key": cls.key, "request-head-timeout": "3s"}
        cls.db = Database()
        cls.service = Service(cls.db, settings=cls.settings)
        cls.service.tls_ca = cls.cert
        try:
            cls.service.start()
        except Exception:
            cls.service.stop()
            cls.db.drop()
            raise

    def curl(self, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "20", *args],
                              capture_output=True, text=True)

    def s_client(self, *args):
        return subprocess.run(["openssl", "s_client", "-connect",
                               "127.0.0.1:%d" % self.service.port, "-CAfile", self.cert, *args],
                              input="", capture_output=True, text=True, timeout=30)


class Https(TlsCase):
    def test_tls_1_2_and_1_3_are_served_and_1_1_is_not(self):
        for flag, version in (("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")):
            r = self.s_client(flag, "-brief")
            out = r.stdout + r.stderr
            self.assertIn("Protocol version: " + version, out, out)
            self.assertIn("Verification: OK", out, out)
        r = self.s_client("-tls1_1", "-brief")
        self.assertNotEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertNotIn("Protocol version: TLSv1.1", r.stdout + r.stderr)
        r = self.curl("--cacert", self.cert, "--tlsv1.1", "--tls-max", "1.1",
                      self.service.url("/livez"))
        self.assertNotEqual(r.returncode, 0, r.stdout)

    def test_the_api_through_curl_as_a_client_calls_it(self):
        token = self.service.token
        r = self.curl("--cacert", self.cert, "-w", "\n%{http_code}", "-X", "POST",
                      "-H", "Authorization: token " + token, "-H", "Content-Type: application/json",
                      "-d", json.dumps({"provider": "gce", "image": "image-2016-01-01"}),
                      self.service.url("/instances"))
        body, _, status = r.stdout.rpartition("\n")
        self.assertEqual(status, "201", r.stdout + r.stderr)
        instance = json.loads(body)
        got = self.curl("--cacert", self.cert, "-H", "Authorization: token " + token,
                        self.service.url("/instances/" + instance["id"]))
        self.assertEqual(json.loads(got.stdout)["id"], instance["id"])
        # Without the CA, curl refuses the self-signed certificate: TLS is real, not decorative.
        r = self.curl(self.service.url("/livez"))
        self.assertEqual(r.returncode, 60, r.stderr)  # CURLE_PEER_FAILED_VERIFICATION

    def test_plain_http_to_the_tls_port_gets_a_clear_400(self):
        with socket.create_connection(("127.0.0.1", self.service.port), timeout=10) as s:
            s.sendall(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            got = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
        head, _, body = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), got[:200])
        self.assertIn(b"application/problem+json", head)
        problem = json.loads(body)
        self.assertEqual(problem["code"], "https_required")
        self.assertIn("https://", problem["detail"])
        r = self.curl("-w", "%{http_code}", "-o", "/dev/null",
                      "http://127.0.0.1:%d/livez" % self.service.port)
        self.assertEqual(r.stdout, "400", r.stderr)
        # The service is unharmed.
        self.assertEqual(self.service.request("GET", "/livez", auth=False).status, 200)

    def test_a_silent_client_is_cut_off_at_the_head_timeout(self):
        with socket.create_connection(("127.0.0.1", self.service.port), timeout=30) as s:
            started = time.monotonic()
            # Neither a handshake nor anything else: the server closes within its head timeout.
            self.assertEqual(s.recv(1), b"")
            self.assertLess(time.monotonic() - started, 10)


class CertificateReload(TlsCase):
    def test_sighup_serves_the_renewed_certificate_and_keeps_it_when_the_files_are_bad(self):
        port = self.service.port
        self.assertEqual(served_fingerprint(port), der_fingerprint(self.cert))
        first = der_fingerprint(self.cert)

        new_cert, new_key = make_cert(self.dir, "renewed", "cloudbrain-renewed")
        os.replace(new_cert, self.cert)
        os.replace(new_key, self.key)
        self.service.proc.send_signal(signal.SIGHUP)
        renewed = der_fingerprint(self.cert)
        self.assertNotEqual(renewed, first)
        wait_until(lambda: served_fingerprint(port) == renewed, 20,
                   what="the renewed certificate served")
        self.assertEqual(self.service.request("GET", "/livez", auth=False).status, 200)

        # A key that is not the certificate's: refused, the running certificate stays.
        _, other_key = make_cert(self.dir, "other", "other")
        os.replace(other_key, self.key)
        self.service.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: any("tls certificate reload refused" in line
                               for line in self.service.log_lines()), 20,
                   what="the refused reload logged")
        self.assertEqual(served_fingerprint(port), renewed)
        self.assertEqual(self.service.request("GET", "/livez", auth=False).status, 200)
        refused = [line for line in self.service.log_lines()
                   if "tls certificate reload refused" in line]
        self.assertIn("is not the key of the certificate", refused[-1])
        self.assertNotIn("PRIVATE KEY", "\n".join(self.service.log_lines()))


class Configuration(unittest.TestCase):
    def check(self, settings):
        db = Database()
        try:
            service = Service(db, settings=settings)
            out = subprocess.run([service.bin, "serve", "--config", service.config_path,
                                  "--check-config"], capture_output=True, text=True, timeout=60)
            return out.returncode, out.stdout + out.stderr
        finally:
            db.drop()

    def test_wrong_tls_settings_stop_serve_naming_the_file(self):
        d = tempfile.mkdtemp(prefix="cloudbrain-tls-")
        cert, key = make_cert(d, "api", "cloudbrain-test")
        code, out = self.check({"tls-cert": cert})
        self.assertEqual(code, 2, out)
        self.assertIn("'tls-cert' needs 'tls-key'", out)
        code, out = self.check({"tls-cert": cert, "tls-key": d + "/missing.key"})
        self.assertEqual(code, 2, out)
        self.assertIn("'tls-key' names '%s/missing.key', which cannot be read" % d, out)
        code, out = self.check({"tls-cert": key, "tls-key": key})
        self.assertEqual(code, 2, out)
        self.assertIn("holds no PEM certificate chain", out)
        code, out = self.check({"tls-cert": cert, "tls-key": key})
        self.assertEqual(code, 0, out)
        self.assertIn("(HTTPS)", out)


if __name__ == "__main__":
    unittest.main()
