#!/usr/bin/env python3
"""Proves tests/emulators/gce/gce_emulator.py speaks Google Compute Engine's wire format.

Two halves:
  * GcloudTests drive the real `gcloud` (a client written by someone else) against the emulator
    and check it is satisfied: create/describe/list/delete instances, reservations, errors,
    service-account JWT auth through gcloud's own google-auth, and the batch endpoint.
  * HttpApiTests use plain HTTP for what gcloud does not exercise: JWT checks, token expiry,
    requestId dedupe, paging, operation polling, fault injection, quota, reservations, control
    API, TLS and the state file.

stdlib only; the emulator runs as its own process (port 0 + port file).
"""
import http.client
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import uuid
import base64

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, '..', '..', '..'))
sys.path.insert(0, os.path.join(REPO, 'tests', 'support'))
from emulator_process import EmulatorProcess  # noqa: E402
GCLOUD = shutil.which('gcloud') or '/usr/bin/gcloud'
PROJECT = 'cb-test-project'
ZONE = 'us-central1-a'
NAT_NET = ipaddress.ip_network('203.0.113.0/24')
FAST = {'op_pending_delay': 0.05, 'provisioning_delay': 0.1, 'staging_delay': 0.1,
        'stopping_delay': 0.1, 'failure_delay': 0.1, 'reservation_create_delay': 0.1,
        'reservation_delete_delay': 0.1, 'wait_timeout': 2.0}
TOKEN = 'tok-main-' + uuid.uuid4().hex


EMU = None


def setUpModule():
    global EMU
    EMU = EmulatorProcess().start()


def tearDownModule():
    if EMU:
        EMU.stop()
        with open(os.path.join(EMU.dir, 'emulator.log'), errors='replace') as f:
            log = f.read()
        if 'Traceback' in log:   # an emulator bug shows up in the test output
            sys.stderr.write('--- emulator log ---\n' + log[-20000:])
        shutil.rmtree(EMU.dir, ignore_errors=True)


class Base(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        EMU.control('POST', 'reset', {'config': FAST})
        EMU.control('POST', 'tokens', {'token': TOKEN, 'email': 'tests@example.com'})

    # --- compute helpers ------------------------------------------------------------------
    def api(self, method, path, body=None, query=None, token=TOKEN, project=PROJECT,
            timeout=15, emu=None):
        emu = emu or EMU
        url = '/compute/v1/projects/%s%s' % (project, path)
        if query:
            url += '?' + urllib.parse.urlencode(query)
        hdrs = {'Authorization': 'Bearer ' + token} if token else {}
        status, obj, _ = emu.request(method, url, body, hdrs, timeout=timeout)
        return status, obj

    def instance_body(self, name, machine_type='e2-micro', labels=None, zone=ZONE, **extra):
        body = {'name': name,
                'machineType': 'zones/%s/machineTypes/%s' % (zone, machine_type),
                'disks': [{'boot': True, 'autoDelete': True, 'initializeParams': {
                    'sourceImage': 'projects/debian-cloud/global/images/family/debian-12'}}],
                'networkInterfaces': [{'accessConfigs': [{'type': 'ONE_TO_ONE_NAT',
                                                          'name': 'External NAT'}]}]}
        if labels:
            body['labels'] = labels
        body.update(extra)
        return body

    def insert(self, name, zone=ZONE, request_id=None, expect=200, **kw):
        q = {'requestId': request_id} if request_id else None
        status, op = self.api('POST', '/zones/%s/instances' % zone,
                              self.instance_body(name, zone=zone, **kw), q)
        self.assertEqual(status, expect, op)
        return op

    def wait_done(self, op, timeout=15):
        zone = op['zone'].rsplit('/', 1)[-1]
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, op = self.api('POST', '/zones/%s/operations/%s/wait' % (zone, op['name']))
            self.assertEqual(status, 200, op)
            if op['status'] == 'DONE':
                return op
        self.fail('operation %s not DONE after %ss' % (op['name'], timeout))

    def assert_google_error(self, status, obj, code, reason, domain='global', message=None):
        self.assertEqual(status, code, obj)
        self.assertIn('error', obj, obj)
        err = obj['error']
        self.assertEqual(err['code'], code)
        self.assertEqual(err['errors'][0]['reason'], reason, err)
        self.assertEqual(err['errors'][0]['domain'], domain, err)
        self.assertEqual(err['errors'][0]['message'], err['message'])
        if message is not None:
            self.assertEqual(err['message'], message)


# ============================================================================================
# gcloud: the real client


class GcloudTests(Base):
    @classmethod
    def setUpClass(cls):
        cls.cfgdir = tempfile.mkdtemp(prefix='gcloud-cfg-')
        cls.tokfile = os.path.join(cls.cfgdir, 'access-token')
        with open(cls.tokfile, 'w') as f:
            f.write(TOKEN + '\n')
        cls.env = dict(os.environ)
        for k in list(cls.env):
            if k.startswith('CLOUDSDK_') or k in ('GOOGLE_APPLICATION_CREDENTIALS',):
                del cls.env[k]
        cls.env.update({'CLOUDSDK_CONFIG': cls.cfgdir,
                        'CLOUDSDK_CORE_DISABLE_PROMPTS': '1',
                        'CLOUDSDK_CORE_DISABLE_USAGE_REPORTING': 'true',
                        'CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK': 'true',
                        'CLOUDSDK_CORE_CHECK_GCE_METADATA': 'false'})
        # gcloud wants an absolute URL ending in '/': either the host root (it then appends
        # compute/v1/) or the full ".../compute/v1/" base, which is what we use.
        cls.endpoint = EMU.base + '/compute/v1/'
        r = subprocess.run([GCLOUD, 'config', 'set', 'api_endpoint_overrides/compute',
                            cls.endpoint], env=cls.env, capture_output=True, text=True,
                           timeout=120)
        if r.returncode != 0:
            raise RuntimeError('gcloud config set failed: %s' % r.stderr)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cfgdir, ignore_errors=True)

    def gcloud(self, *args, env=None, auth=True, fmt='json'):
        cmd = [GCLOUD] + list(args) + ['--project', PROJECT, '--quiet']
        if fmt:
            cmd.append('--format=' + fmt)
        if auth:
            cmd += ['--access-token-file', self.tokfile]
        r = subprocess.run(cmd, env=env or self.env, capture_output=True, text=True,
                           timeout=180)
        out = None
        if r.returncode == 0 and fmt == 'json' and r.stdout.strip():
            out = json.loads(r.stdout)
        return r.returncode, out, r.stderr

    def test_instance_lifecycle(self):
        rc, out, err = self.gcloud(
            'compute', 'instances', 'create', 'gc-vm-1', '--zone', ZONE,
            '--machine-type', 'n1-standard-1', '--image-family', 'debian-12',
            '--image-project', 'debian-cloud', '--labels', 'cloudbrain=yes,test-id=abc123',
            '--metadata', 'ssh-keys=travis:ssh-rsa AAAAB3NzaC1yc2E test@host',
            '--provisioning-model=SPOT')
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out), 1)
        self.assertEqual(out[0]['name'], 'gc-vm-1')
        self.assertEqual(out[0]['status'], 'RUNNING')

        # another instance (made directly) that the label filter must exclude
        self.wait_done(self.insert('gc-vm-2', labels={'cloudbrain': 'yes', 'test-id': 'zzz'}))

        rc, inst, err = self.gcloud('compute', 'instances', 'describe', 'gc-vm-1',
                                    '--zone', ZONE)
        self.assertEqual(rc, 0, err)
        self.assertEqual(inst['status'], 'RUNNING')
        self.assertEqual(inst['kind'], 'compute#instance')
        self.assertEqual(inst['labels'], {'cloudbrain': 'yes', 'test-id': 'abc123'})
        nat = inst['networkInterfaces'][0]['accessConfigs'][0]['natIP']
        self.assertIn(ipaddress.ip_address(nat), NAT_NET)
        self.assertTrue(inst['networkInterfaces'][0]['networkIP'].startswith('10.'))
        self.assertEqual(inst['scheduling']['provisioningModel'], 'SPOT')
        self.assertIn({'key': 'ssh-keys', 'value': 'travis:ssh-rsa AAAAB3NzaC1yc2E test@host'},
                      inst['metadata']['items'])
        self.assertTrue(inst['selfLink'].startswith(self.endpoint), inst['selfLink'])
        self.assertTrue(inst['machineType'].endswith('/zones/%s/machineTypes/n1-standard-1'
                                                     % ZONE))
        self.assertRegex(inst['id'], r'^\d+$')

        rc, listed, err = self.gcloud('compute', 'instances', 'list',
                                      '--filter=labels.test-id=abc123')
        self.assertEqual(rc, 0, err)
        self.assertEqual([i['name'] for i in listed], ['gc-vm-1'])

        rc, _, err = self.gcloud('compute', 'instances', 'delete', 'gc-vm-1', '--zone', ZONE)
        self.assertEqual(rc, 0, err)
        rc, _, err = self.gcloud('compute', 'instances', 'describe', 'gc-vm-1', '--zone', ZONE)
        self.assertNotEqual(rc, 0)
        self.assertIn("The resource 'projects/%s/zones/%s/instances/gc-vm-1' was not found"
                      % (PROJECT, ZONE), err)

        counters = EMU.control('GET', 'counters')
        self.assertEqual(counters['instances_created'].get('gc-vm-1'), 1)
        self.assertEqual(counters['delete_calls'].get('gc-vm-1'), 1)
        routes = [e.get('route') for e in EMU.control('GET', 'requests')['requests']]
        for r in ('zones.get', 'projects.get', 'instances.insert', 'zoneOperations.wait',
                  'instances.get', 'aggregated.instances', 'instances.delete'):
            self.assertIn(r, routes)

    def test_list_through_batch_endpoint(self):
        EMU.control('POST', 'instances', {'project': PROJECT, 'zone': 'us-east1-b',
                                          'name': 'planted-b', 'labels': {'k': 'v'}})
        env = dict(self.env, CLOUDSDK_COMPUTE_FORCE_BATCH_REQUEST='true')
        rc, listed, err = self.gcloud('compute', 'instances', 'list', '--zones', 'us-east1-b',
                                      env=env)
        self.assertEqual(rc, 0, err)
        self.assertEqual([i['name'] for i in listed], ['planted-b'])
        reqs = EMU.control('GET', 'requests')['requests']
        self.assertIn('/batch/compute/v1', [e['path'] for e in reqs])
        inner = [e for e in reqs if e.get('batch')]
        self.assertEqual(inner[0]['route'], 'instances.list')
        self.assertEqual(inner[0]['status'], 200)

    def test_unknown_image_fails(self):
        rc, _, err = self.gcloud('compute', 'instances', 'create', 'gc-bad-image', '--zone',
                                 ZONE, '--machine-type', 'e2-micro', '--image', 'no-such-image',
                                 '--image-project', 'debian-cloud')
        self.assertNotEqual(rc, 0)
        self.assertIn("The resource 'projects/debian-cloud/global/images/no-such-image' was not "
                      "found", err)
        self.assertEqual(EMU.control('GET', 'instances')['instances'], [])

    def test_exhausted_zone_fails(self):
        EMU.control('POST', 'capacity', {'zone': 'us-central1-b', 'remaining': 0})
        rc, _, err = self.gcloud('compute', 'instances', 'create', 'gc-no-room', '--zone',
                                 'us-central1-b', '--machine-type', 'e2-micro', '--image-family',
                                 'debian-12', '--image-project', 'debian-cloud', '--preemptible')
        self.assertNotEqual(rc, 0)
        self.assertIn('ZONE_RESOURCE_POOL_EXHAUSTED', err)
        self.assertIn("The zone 'projects/%s/zones/us-central1-b' does not have enough "
                      "resources" % PROJECT, err.replace('\n  ', ' '))
        self.assertEqual(EMU.control('GET', 'instances')['instances'], [])

    def test_reservations(self):
        rc, out, err = self.gcloud('compute', 'reservations', 'create', 'gc-res', '--zone', ZONE,
                                   '--vm-count', '2', '--machine-type', 'n1-standard-2',
                                   '--require-specific-reservation')
        self.assertEqual(rc, 0, err)
        self.assertEqual(out[0]['name'], 'gc-res')   # gcloud GETs it after the operation
        rc, listed, err = self.gcloud('compute', 'reservations', 'list')
        self.assertEqual(rc, 0, err)
        self.assertEqual([r['name'] for r in listed], ['gc-res'])
        res = listed[0]
        self.assertEqual(res['kind'], 'compute#reservation')
        self.assertEqual(res['status'], 'READY')
        self.assertTrue(res['specificReservationRequired'])
        self.assertEqual(res['specificReservation']['count'], '2')
        self.assertEqual(res['specificReservation']['inUseCount'], '0')
        self.assertEqual(res['specificReservation']['instanceProperties']['machineType'],
                         'n1-standard-2')
        self.assertTrue(res['zone'].endswith('/zones/' + ZONE))

        rc, out, err = self.gcloud('compute', 'instances', 'create', 'gc-reserved', '--zone',
                                   ZONE, '--machine-type', 'n1-standard-2', '--image-family',
                                   'debian-12', '--image-project', 'debian-cloud',
                                   '--reservation-affinity=specific', '--reservation=gc-res')
        self.assertEqual(rc, 0, err)
        self.assertEqual(out[0]['reservationAffinity']['values'], ['gc-res'])
        rc, res, err = self.gcloud('compute', 'reservations', 'describe', 'gc-res',
                                   '--zone', ZONE)
        self.assertEqual(rc, 0, err)
        self.assertEqual(res['specificReservation']['inUseCount'], '1')

        rc, _, err = self.gcloud('compute', 'reservations', 'delete', 'gc-res', '--zone', ZONE)
        self.assertEqual(rc, 0, err)
        self.assertEqual(EMU.control('GET', 'reservations')['reservations'], [])

    def test_service_account_key_through_gcloud(self):
        cfg = tempfile.mkdtemp(prefix='gcloud-sa-')
        try:
            shutil.copytree(self.cfgdir, cfg, dirs_exist_ok=True)
            env = dict(self.env, CLOUDSDK_CONFIG=cfg)
            # google-auth (inside gcloud) signs for Google's canonical audience.
            EMU.control('POST', 'config',
                        {'accepted_audiences': ['https://oauth2.googleapis.com/token']})
            key = EMU.control('POST', 'service-accounts',
                              {'email': 'cb-sa@%s.iam.gserviceaccount.com' % PROJECT})
            self.assertEqual(key['token_uri'], EMU.base + '/token')
            keyfile = os.path.join(cfg, 'key.json')
            with open(keyfile, 'w') as f:
                json.dump(key, f)
            r = subprocess.run([GCLOUD, 'auth', 'activate-service-account', '--key-file',
                                keyfile], env=env, capture_output=True, text=True, timeout=120)
            self.assertEqual(r.returncode, 0, r.stderr)
            EMU.control('DELETE', 'requests')
            rc, zones, err = self.gcloud('compute', 'zones', 'list', env=env, auth=False)
            self.assertEqual(rc, 0, err)
            self.assertIn(ZONE, [z['name'] for z in zones])
            reqs = EMU.control('GET', 'requests')['requests']
            compute = [e for e in reqs if e['path'].startswith('/compute/')]
            self.assertTrue(compute and all(e['status'] == 200 for e in compute), reqs)
            self.assertGreaterEqual(EMU.control('GET', 'counters')['tokens_issued'], 1)
        finally:
            shutil.rmtree(cfg, ignore_errors=True)


# ============================================================================================
# Direct HTTP


def b64url(data):
    return base64.urlsafe_b64encode(data).decode().rstrip('=')


class KeyPair:
    def __init__(self, workdir):
        self.path = os.path.join(workdir, 'key-%s.pem' % uuid.uuid4().hex)
        subprocess.run(['openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt',
                        'rsa_keygen_bits:2048', '-out', self.path], check=True,
                       capture_output=True)
        self.public_pem = subprocess.run(['openssl', 'pkey', '-in', self.path, '-pubout'],
                                         check=True, capture_output=True, text=True).stdout

    def sign(self, data):
        return subprocess.run(['openssl', 'dgst', '-sha256', '-sign', self.path, '-binary'],
                              input=data, check=True, capture_output=True).stdout


class HttpApiTests(Base):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix='gce-http-')
        cls.key = KeyPair(cls.tmp)
        cls.other_key = KeyPair(cls.tmp)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    SA = 'driver@cb-test-project.iam.gserviceaccount.com'

    def jwt(self, key=None, header=None, **claims):
        t = int(time.time())
        c = {'iss': self.SA, 'scope': 'https://www.googleapis.com/auth/compute',
             'aud': EMU.base + '/token', 'iat': t, 'exp': t + 3600}
        c.update(claims)
        c = {k: v for k, v in c.items() if v is not None}
        h = header or {'alg': 'RS256', 'typ': 'JWT'}
        signing_input = (b64url(json.dumps(h).encode()) + '.' +
                         b64url(json.dumps(c).encode())).encode()
        return signing_input.decode() + '.' + b64url((key or self.key).sign(signing_input))

    def exchange(self, assertion, grant='urn:ietf:params:oauth:grant-type:jwt-bearer'):
        form = urllib.parse.urlencode({'grant_type': grant, 'assertion': assertion}).encode()
        status, obj, _ = EMU.request('POST', '/token', raw_body=form, headers={
            'Content-Type': 'application/x-www-form-urlencoded'})
        return status, obj

    def register_key(self):
        EMU.control('POST', 'keys', {'email': self.SA, 'public_key_pem': self.key.public_pem})

    # --- auth -----------------------------------------------------------------------------
    def test_jwt_exchange(self):
        self.register_key()
        status, tok = self.exchange(self.jwt())
        self.assertEqual(status, 200, tok)
        self.assertEqual(tok['token_type'], 'Bearer')
        self.assertEqual(tok['expires_in'], 3600)
        status, zone = self.api('GET', '/zones/' + ZONE, token=tok['access_token'])
        self.assertEqual(status, 200, zone)
        self.assertEqual(zone['kind'], 'compute#zone')

        good = self.jwt()
        head, claims, sig = good.split('.')
        raw = bytearray(base64.urlsafe_b64decode(sig + '=' * (-len(sig) % 4)))
        raw[10] ^= 0x01
        cases = {
            'bad signature': head + '.' + claims + '.' + b64url(bytes(raw)),
            'signed by another key': self.jwt(key=self.other_key),
            'expired': self.jwt(iat=int(time.time()) - 7200, exp=int(time.time()) - 3600),
            'wrong aud': self.jwt(aud='https://oauth2.googleapis.com/token'),
            'lifetime over 1h': self.jwt(exp=int(time.time()) + 7200),
            'unknown issuer': self.jwt(iss='stranger@example.iam.gserviceaccount.com'),
            'not RS256': self.jwt(header={'alg': 'HS256', 'typ': 'JWT'}),
            'garbage': 'not-a-jwt',
        }
        for what, assertion in cases.items():
            with self.subTest(what):
                status, obj = self.exchange(assertion)
                self.assertEqual(status, 400, obj)
                self.assertEqual(obj['error'], 'invalid_grant', obj)
                self.assertTrue(obj['error_description'])
        status, obj = self.exchange(self.jwt(scope=None))
        self.assertEqual((status, obj['error']), (400, 'invalid_scope'))
        status, obj = self.exchange(self.jwt(), grant='password')
        self.assertEqual((status, obj['error']), (400, 'unsupported_grant_type'))
        # an audience can be accepted by configuration
        EMU.control('POST', 'config',
                    {'accepted_audiences': ['https://oauth2.googleapis.com/token']})
        status, tok = self.exchange(self.jwt(aud='https://oauth2.googleapis.com/token'))
        self.assertEqual(status, 200, tok)
        self.assertEqual(EMU.control('GET', 'counters')['tokens_issued'], 2)

    def test_access_token_expiry_and_missing_auth(self):
        self.register_key()
        EMU.control('POST', 'config', {'token_lifetime': 1})
        status, tok = self.exchange(self.jwt())
        self.assertEqual((status, tok['expires_in']), (200, 1))
        status, _ = self.api('GET', '/zones/' + ZONE, token=tok['access_token'])
        self.assertEqual(status, 200)
        time.sleep(1.2)
        status, obj, resp = EMU.request(
            'GET', '/compute/v1/projects/%s/zones/%s' % (PROJECT, ZONE),
            headers={'Authorization': 'Bearer ' + tok['access_token']})
        self.assert_google_error(status, obj, 401, 'authError')
        self.assertEqual(obj['error']['status'], 'UNAUTHENTICATED')
        self.assertIn('Bearer', resp.getheader('WWW-Authenticate'))
        for token in (None, 'never-issued'):
            status, obj = self.api('GET', '/zones/' + ZONE, token=token)
            self.assert_google_error(status, obj, 401, 'authError')
        # static tokens can be given a lifetime and expired by the control API
        EMU.control('POST', 'tokens', {'token': 'short-lived', 'expires_in': 0.3})
        self.assertEqual(self.api('GET', '/zones/' + ZONE, token='short-lived')[0], 200)
        time.sleep(0.4)
        self.assertEqual(self.api('GET', '/zones/' + ZONE, token='short-lived')[0], 401)
        EMU.control('POST', 'tokens', {'token': TOKEN, 'expires_in': 0})
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 401)

    def test_metadata_server_token(self):
        path = '/computeMetadata/v1/instance/service-accounts/default/token'
        status, _, _ = EMU.request('GET', path)
        self.assertEqual(status, 403)
        status, tok, resp = EMU.request('GET', path, headers={'Metadata-Flavor': 'Google'})
        self.assertEqual(status, 200, tok)
        self.assertEqual(resp.getheader('Metadata-Flavor'), 'Google')
        self.assertEqual(tok['token_type'], 'Bearer')
        self.assertGreater(tok['expires_in'], 0)
        self.assertEqual(self.api('GET', '/zones/' + ZONE, token=tok['access_token'])[0], 200)

    # --- requestId ------------------------------------------------------------------------
    def test_request_id_dedupe(self):
        rid = str(uuid.uuid4())
        op1 = self.insert('dedupe-vm', request_id=rid)
        op2 = self.insert('dedupe-vm', request_id=rid)
        self.assertEqual(op1['id'], op2['id'])
        self.assertEqual(op1['name'], op2['name'])
        self.wait_done(op1)
        op3 = self.insert('dedupe-vm', request_id=rid)
        self.assertEqual(op3['id'], op1['id'])
        self.assertEqual(op3['status'], 'DONE')
        status, obj = self.api('POST', '/zones/%s/instances' % ZONE,
                               self.instance_body('dedupe-vm'), {'requestId': str(uuid.uuid4())})
        self.assert_google_error(status, obj, 409, 'alreadyExists')
        status, lst = self.api('GET', '/zones/%s/instances' % ZONE)
        self.assertEqual([i['name'] for i in lst['items']], ['dedupe-vm'])
        c = EMU.control('GET', 'counters')
        self.assertEqual(c['insert_calls']['dedupe-vm'], 4)
        self.assertEqual(c['instances_created']['dedupe-vm'], 1)
        drid = str(uuid.uuid4())
        s1, d1 = self.api('DELETE', '/zones/%s/instances/dedupe-vm' % ZONE,
                          query={'requestId': drid})
        s2, d2 = self.api('DELETE', '/zones/%s/instances/dedupe-vm' % ZONE,
                          query={'requestId': drid})
        self.assertEqual((s1, s2), (200, 200))
        self.assertEqual(d1['id'], d2['id'])
        status, obj = self.api('POST', '/zones/%s/instances' % ZONE,
                               self.instance_body('other'), {'requestId': 'not-a-uuid'})
        self.assert_google_error(status, obj, 400, 'invalid')

    def test_concurrent_inserts(self):
        import threading
        rid, results, errors = str(uuid.uuid4()), [], []

        def same_request():
            try:
                results.append(self.api('POST', '/zones/%s/instances' % ZONE,
                                        self.instance_body('racer'), {'requestId': rid}))
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
        threads = [threading.Thread(target=same_request) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual({s for s, _ in results}, {200})
        self.assertEqual(len({op['id'] for _, op in results}), 1)
        # distinct names racing for 10 slots: exactly 10 get a VM
        EMU.control('POST', 'capacity', {'zone': 'us-east1-b', 'remaining': 10})
        ops = []

        def one(i):
            ops.append(self.api('POST', '/zones/us-east1-b/instances',
                                self.instance_body('racer-%02d' % i, zone='us-east1-b'))[1])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(25)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        done = [self.wait_done(op) for op in ops]
        self.assertEqual(sum(1 for op in done if 'error' not in op), 10)
        names = [i['name'] for i in EMU.control('GET', 'instances')['instances']]
        self.assertEqual(len(names), 11)   # 10 racers + 'racer'
        self.assertEqual(EMU.control('GET', 'counters')['instances_created']['racer'], 1)

    # --- paging ---------------------------------------------------------------------------
    def test_paging(self):
        names = ['page-vm-%02d' % i for i in range(25)]
        for n in names:
            self.insert(n, labels={'batch': 'paging'})
        self.insert('page-other')
        seen, pages, token = [], 0, None
        while True:
            q = {'maxResults': 10, 'filter': 'labels.batch = "paging"'}
            if token:
                q['pageToken'] = token
            status, page = self.api('GET', '/zones/%s/instances' % ZONE, query=q)
            self.assertEqual(status, 200, page)
            self.assertEqual(page['kind'], 'compute#instanceList')
            pages += 1
            seen += [i['name'] for i in page['items']]
            token = page.get('nextPageToken')
            if not token or pages > 5:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(len(seen), 25)
        self.assertEqual(sorted(set(seen)), names)
        # aggregatedList pages too, keyed by zones/<zone>
        status, agg = self.api('GET', '/aggregated/instances', query={'maxResults': 20})
        self.assertEqual(status, 200, agg)
        self.assertEqual(len(agg['items']['zones/' + ZONE]['instances']), 20)
        self.assertIn('nextPageToken', agg)
        self.assertEqual(agg['items']['zones/us-east1-b']['warning']['code'],
                         'NO_RESULTS_ON_PAGE')
        status, obj = self.api('GET', '/zones/%s/instances' % ZONE, query={'maxResults': 501})
        self.assert_google_error(status, obj, 400, 'invalid')
        status, obj = self.api('GET', '/zones/%s/instances' % ZONE,
                               query={'pageToken': 'bogus'})
        self.assert_google_error(status, obj, 400, 'invalid')

    # --- operations and instance lifecycle -------------------------------------------------
    def test_operation_wait_loop(self):
        EMU.control('POST', 'config', {'op_pending_delay': 0.3, 'provisioning_delay': 0.4,
                                       'staging_delay': 0.4, 'wait_timeout': 0.2})
        t0 = time.time()
        op = self.insert('op-vm')
        self.assertEqual(op['kind'], 'compute#operation')
        self.assertEqual(op['status'], 'PENDING')
        self.assertEqual(op['operationType'], 'insert')
        self.assertEqual(op['progress'], 0)
        self.assertRegex(op['id'], r'^\d+$')
        self.assertRegex(op['insertTime'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[-+]\d\d:\d\d$')
        self.assertTrue(op['selfLink'].endswith('/zones/%s/operations/%s' % (ZONE, op['name'])))
        self.assertTrue(op['targetLink'].endswith('/zones/%s/instances/op-vm' % ZONE))
        status, got = self.api('GET', '/zones/%s/operations/%s' % (ZONE, op['name']))
        self.assertEqual((status, got['status']), (200, 'PENDING'))
        statuses, inst_statuses, waited = [op['status']], [], []
        while True:
            t = time.time()
            status, got = self.api('POST', '/zones/%s/operations/%s/wait' % (ZONE, op['name']))
            self.assertEqual(status, 200, got)
            self.assertLess(time.time() - t, 1.0)   # wait returns early, like Google's
            if got['status'] != 'DONE':
                waited.append(time.time() - t)
            statuses.append(got['status'])
            s, inst = self.api('GET', '/zones/%s/instances/op-vm' % ZONE)
            if s == 200:
                inst_statuses.append(inst['status'])
                if inst['status'] != 'RUNNING':
                    self.assertNotIn('natIP', inst['networkInterfaces'][0]['accessConfigs'][0])
            if got['status'] == 'DONE':
                break
            self.assertLess(time.time() - t0, 10)
        self.assertTrue(waited and min(waited) >= 0.15, waited)  # ...but it does wait
        dedup = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
        self.assertEqual(dedup, ['PENDING', 'RUNNING', 'DONE'])
        self.assertIn('STAGING', inst_statuses)
        self.assertEqual(got['progress'], 100)
        for k in ('startTime', 'endTime', 'insertTime'):
            self.assertIn(k, got)
        self.assertNotIn('error', got)
        s, inst = self.api('GET', '/zones/%s/instances/op-vm' % ZONE)
        self.assertEqual(inst['status'], 'RUNNING')
        self.assertEqual(got['targetId'], inst['id'])
        nat = inst['networkInterfaces'][0]['accessConfigs'][0]['natIP']
        self.assertIn(ipaddress.ip_address(nat), NAT_NET)
        # delete: STOPPING then gone
        s, dop = self.api('DELETE', '/zones/%s/instances/op-vm' % ZONE)
        self.assertEqual((s, dop['operationType']), (200, 'delete'))
        s, inst = self.api('GET', '/zones/%s/instances/op-vm' % ZONE)
        self.assertEqual(inst['status'], 'STOPPING')
        self.wait_done(dop)
        s, obj = self.api('GET', '/zones/%s/instances/op-vm' % ZONE)
        self.assert_google_error(s, obj, 404, 'notFound',
                                 message="The resource 'projects/%s/zones/%s/instances/op-vm' "
                                         "was not found" % (PROJECT, ZONE))

    # --- faults ---------------------------------------------------------------------------
    def test_throttle(self):
        EMU.control('POST', 'throttle', {'count': 2})
        for _ in range(2):
            s, obj = self.api('GET', '/zones/' + ZONE)
            self.assert_google_error(s, obj, 403, 'rateLimitExceeded', domain='usageLimits')
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 200)
        EMU.control('POST', 'throttle', {'count': 1, 'status': 429})
        s, obj = self.api('GET', '/zones/' + ZONE)
        self.assert_google_error(s, obj, 429, 'rateLimitExceeded')
        self.assertEqual(obj['error']['status'], 'RESOURCE_EXHAUSTED')
        # a rate: at most 5 calls per rolling second get through
        EMU.control('POST', 'throttle', {'rate': 5})
        results = [self.api('GET', '/zones/' + ZONE)[0] for _ in range(12)]
        self.assertEqual(results.count(200), 5, results)
        self.assertEqual(results.count(403), 7, results)
        time.sleep(1.05)
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 200)
        EMU.control('DELETE', 'faults')
        self.assertEqual([self.api('GET', '/zones/' + ZONE)[0] for _ in range(8)], [200] * 8)

    def test_5xx_injection(self):
        EMU.control('POST', 'fail', {'count': 1, 'status': 500})
        s, obj = self.api('GET', '/zones/' + ZONE)
        self.assert_google_error(s, obj, 500, 'backendError')
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 200)
        EMU.control('POST', 'fail', {'count': 1, 'status': 503, 'method': 'POST',
                                     'path_regex': '/instances$'})
        self.assertEqual(self.api('GET', '/zones/%s/instances' % ZONE)[0], 200)
        s, obj = self.api('POST', '/zones/%s/instances' % ZONE, self.instance_body('five-oh-3'))
        self.assert_google_error(s, obj, 503, 'backendError')
        self.assertEqual(EMU.control('GET', 'counters')['instances_created'], {})
        self.wait_done(self.insert('five-oh-3'))
        self.assertEqual(EMU.control('GET', 'counters')['instances_created'], {'five-oh-3': 1})

    def test_dropped_connection(self):
        EMU.control('POST', 'drop', {'count': 1})
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.api('GET', '/zones/' + ZONE)
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 200)
        # the insert is performed, then the answer is lost: a retry with the same requestId
        # must not make a second VM
        EMU.control('POST', 'drop', {'count': 1, 'when': 'after', 'method': 'POST'})
        rid = str(uuid.uuid4())
        with self.assertRaises((http.client.RemoteDisconnected, ConnectionError)):
            self.insert('lost-answer', request_id=rid)
        op = self.insert('lost-answer', request_id=rid)
        self.wait_done(op)
        c = EMU.control('GET', 'counters')
        self.assertEqual(c['instances_created'], {'lost-answer': 1})
        self.assertEqual(c['insert_calls'], {'lost-answer': 2})
        log = EMU.control('GET', 'requests', None)['requests']
        self.assertEqual([e['status'] for e in log if e.get('fault')], ['dropped', 'dropped'])

    def test_stall(self):
        EMU.control('POST', 'stall', {'count': 1, 'seconds': 1.0})
        with self.assertRaises((socket.timeout, TimeoutError)):
            self.api('GET', '/zones/' + ZONE, timeout=0.3)
        t = time.time()
        self.assertEqual(self.api('GET', '/zones/' + ZONE)[0], 200)
        self.assertLess(time.time() - t, 0.5)
        time.sleep(0.9)
        stalled = [e for e in EMU.control('GET', 'requests')['requests'] if e.get('fault')]
        self.assertEqual(len(stalled), 1)
        self.assertGreaterEqual(stalled[0]['duration_ms'], 1000)

    def test_request_log_and_counters(self):
        start = EMU.control('GET', 'requests')['requests'][-1]['seq']
        for i in range(3):
            self.insert('log-vm-%d' % i, labels={'run': 'log'})
        self.api('GET', '/zones/%s/instances' % ZONE, query={'filter': 'labels.run = "log"'})
        self.api('GET', '/zones/%s/instances/nope' % ZONE)
        log = EMU.control('GET', 'requests?since=%d&path_prefix=/compute/' % start)['requests']
        self.assertEqual([e['route'] for e in log], ['instances.insert'] * 3 +
                         ['instances.list', 'instances.get'])
        self.assertEqual([e['status'] for e in log], [200, 200, 200, 200, 404])
        self.assertEqual(log[0]['method'], 'POST')
        self.assertEqual(log[0]['path'], '/compute/v1/projects/%s/zones/%s/instances'
                         % (PROJECT, ZONE))
        self.assertIn('labels.run', urllib.parse.unquote_plus(log[3]['query']))
        ts = [e['t'] for e in log]
        self.assertEqual(ts, sorted(ts))
        # "no more than N calls per second" is answerable from the log
        peak = max(sum(1 for u in ts if t <= u < t + 1.0) for t in ts)
        self.assertEqual(peak, 5)
        state = EMU.control('GET', 'state')
        self.assertEqual(sorted(i['name'] for i in state['instances']),
                         ['log-vm-0', 'log-vm-1', 'log-vm-2'])
        self.assertEqual(state['instances'][0]['labels'], {'run': 'log'})
        c = state['counters']
        self.assertEqual(c['insert_calls'], {'log-vm-0': 1, 'log-vm-1': 1, 'log-vm-2': 1})
        self.assertEqual(c['methods']['instances.insert'], 3)
        self.assertEqual(c['methods']['instances.get'], 1)

    # --- capacity, quota, reservations ----------------------------------------------------
    def test_zone_capacity(self):
        EMU.control('POST', 'capacity', {'zone': ZONE, 'remaining': 1})
        self.assertNotIn('error', self.wait_done(self.insert('cap-1')))
        op = self.wait_done(self.insert('cap-2'))
        err = op['error']['errors'][0]
        self.assertEqual(err['code'], 'ZONE_RESOURCE_POOL_EXHAUSTED')
        self.assertEqual(err['message'], "The zone 'projects/%s/zones/%s' does not have enough "
                         "resources available to fulfill the request.  Try a different zone, "
                         "or try again later." % (PROJECT, ZONE))
        self.assertEqual(op['httpErrorStatusCode'], 503)
        self.assertEqual(self.api('GET', '/zones/%s/instances/cap-2' % ZONE)[0], 404)
        EMU.control('POST', 'capacity', {'zone': ZONE, 'remaining': 0,
                                         'code': 'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS'})
        s, rop = self.api('POST', '/zones/%s/reservations' % ZONE, {
            'name': 'cap-res', 'specificReservation': {
                'count': '1', 'instanceProperties': {'machineType': 'e2-micro'}}})
        self.assertEqual(s, 200, rop)
        rop = self.wait_done(rop)
        self.assertEqual(rop['error']['errors'][0]['code'],
                         'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS')
        self.assertIn('errorDetails', rop['error']['errors'][0])
        self.assertEqual(self.api('GET', '/zones/%s/reservations/cap-res' % ZONE)[0], 404)
        EMU.control('POST', 'capacity', {'zone': ZONE, 'remaining': None})
        self.assertNotIn('error', self.wait_done(self.insert('cap-3')))

    def test_quota(self):
        EMU.control('POST', 'quota', {'metric': 'CPUS', 'limit': 4, 'region': 'us-central1'})
        for n in ('q-1', 'q-2'):
            self.insert(n, machine_type='n1-standard-2')
        s, obj = self.api('POST', '/zones/%s/instances' % ZONE,
                          self.instance_body('q-3', machine_type='n1-standard-2'))
        self.assert_google_error(s, obj, 403, 'quotaExceeded', domain='usageLimits',
                                 message="Quota 'CPUS' exceeded.  Limit: 4.0 in region "
                                         "us-central1.")
        self.assertEqual(obj['error']['details'][0]['reason'], 'QUOTA_EXCEEDED')
        self.insert('q-east', zone='us-east1-b', machine_type='n1-standard-2')
        EMU.control('POST', 'quota', {'metric': 'CPUS', 'limit': 4, 'region': 'us-central1',
                                      'mode': 'operation'})
        op = self.wait_done(self.insert('q-4', machine_type='n1-standard-2'))
        self.assertEqual(op['error']['errors'][0]['code'], 'QUOTA_EXCEEDED')
        self.assertEqual(op['httpErrorStatusCode'], 403)
        self.assertEqual(op['error']['errors'][0]['errorDetails'][0]['quotaInfo']['limit'], 4)

    def test_reservation_consumption(self):
        EMU.control('POST', 'config', {'reservation_create_delay': 0.6})
        s, op = self.api('POST', '/zones/%s/reservations' % ZONE, {
            'name': 'res-a', 'specificReservationRequired': True,
            'specificReservation': {'count': '1',
                                    'instanceProperties': {'machineType': 'n1-standard-2'}}})
        self.assertEqual(s, 200, op)
        s, res = self.api('GET', '/zones/%s/reservations/res-a' % ZONE)
        self.assertEqual(res['status'], 'CREATING')
        affinity = {'consumeReservationType': 'SPECIFIC_RESERVATION',
                    'key': 'compute.googleapis.com/reservation-name', 'values': ['res-a']}
        s, obj = self.api('POST', '/zones/%s/instances' % ZONE, self.instance_body(
            'too-early', machine_type='n1-standard-2', reservationAffinity=affinity))
        self.assert_google_error(s, obj, 400, 'resourceNotReady')
        self.wait_done(op)
        self.assertNotIn('error', self.wait_done(self.insert(
            'in-res-1', machine_type='n1-standard-2', reservationAffinity=affinity)))
        s, res = self.api('GET', '/zones/%s/reservations/res-a' % ZONE)
        self.assertEqual(res['specificReservation']['inUseCount'], '1')
        op = self.wait_done(self.insert('in-res-2', machine_type='n1-standard-2',
                                        reservationAffinity=affinity))
        self.assertEqual(op['error']['errors'][0]['code'], 'RESERVATION_CAPACITY_EXCEEDED')
        s, obj = self.api('POST', '/zones/%s/instances' % ZONE, self.instance_body(
            'wrong-type', machine_type='e2-micro', reservationAffinity=affinity))
        self.assert_google_error(s, obj, 400, 'invalid')
        self.assertIn('is incorrect for the requested resources', obj['error']['message'])
        s, obj = self.api('POST', '/zones/%s/instances' % ZONE, self.instance_body(
            'no-res', machine_type='n1-standard-2',
            reservationAffinity=dict(affinity, values=['nope'])))
        self.assert_google_error(s, obj, 400, 'invalid')
        self.wait_done(self.api('DELETE', '/zones/%s/instances/in-res-1' % ZONE)[1])
        s, res = self.api('GET', '/zones/%s/reservations/res-a' % ZONE)
        self.assertEqual(res['specificReservation']['inUseCount'], '0')
        # a non-specific reservation is consumed automatically (ANY_RESERVATION, the default)
        self.wait_done(self.api('POST', '/zones/%s/reservations' % ZONE, {
            'name': 'res-open', 'specificReservation': {
                'count': '3', 'instanceProperties': {'machineType': 'e2-micro'}}})[1])
        self.wait_done(self.insert('auto-consumer', machine_type='e2-micro'))
        self.assertEqual(self.api('GET', '/zones/%s/reservations/res-open' % ZONE)[1]
                         ['specificReservation']['inUseCount'], '1')
        # deleteAfterDuration ends the reservation
        s, op = self.api('POST', '/zones/%s/reservations' % ZONE, {
            'name': 'res-short', 'deleteAfterDuration': {'seconds': '1'},
            'specificReservation': {'count': '1',
                                    'instanceProperties': {'machineType': 'e2-micro'}}})
        self.assertEqual(s, 200, op)
        s, res = self.api('GET', '/zones/%s/reservations/res-short' % ZONE)
        self.assertIn('deleteAtTime', res)
        time.sleep(1.4)
        self.assertEqual(self.api('GET', '/zones/%s/reservations/res-short' % ZONE)[0], 404)

    # --- validation -----------------------------------------------------------------------
    def test_validation_errors(self):
        path = '/zones/%s/instances' % ZONE
        s, obj = self.api('POST', path, self.instance_body('Bad_Name'))
        self.assert_google_error(s, obj, 400, 'invalid')
        self.assertIn("Invalid value for field 'resource.name': 'Bad_Name'",
                      obj['error']['message'])
        s, obj = self.api('POST', path, self.instance_body('x' * 64))
        self.assert_google_error(s, obj, 400, 'invalid')
        s, obj = self.api('POST', path, self.instance_body('ok-name', machine_type='n9-huge'))
        self.assert_google_error(s, obj, 400, 'invalid')
        self.assertIn("Machine type with name 'n9-huge' does not exist in zone '%s'" % ZONE,
                      obj['error']['message'])
        s, obj = self.api('POST', path, self.instance_body('ok-name', colour='blue'))
        self.assert_google_error(s, obj, 400, 'badRequest')
        self.assertIn('Unknown name "colour"', obj['error']['message'])
        s, obj = self.api('POST', path, self.instance_body(
            'ok-name', scheduling={'provisioningModel': 'CHEAP'}))
        self.assert_google_error(s, obj, 400, 'badRequest')
        body = self.instance_body('ok-name')
        body['disks'][0]['initializeParams']['sourceImage'] = \
            'projects/debian-cloud/global/images/family/debian-99'
        s, obj = self.api('POST', path, body)
        self.assert_google_error(s, obj, 404, 'notFound',
                                 message="The resource 'projects/debian-cloud/global/images/"
                                         "family/debian-99' was not found")
        s, obj = self.api('POST', path, self.instance_body('ok-name', labels={'Key': 'v'}))
        self.assert_google_error(s, obj, 400, 'invalid')
        s, obj, _ = EMU.request('POST', '/compute/v1/projects/%s%s' % (PROJECT, path),
                                raw_body=b'{not json', headers={
                                    'Authorization': 'Bearer ' + TOKEN,
                                    'Content-Type': 'application/json'})
        self.assert_google_error(s, obj, 400, 'badRequest')
        s, obj = self.api('GET', '/zones/mars-north1-a/instances')
        self.assert_google_error(s, obj, 404, 'notFound')
        self.insert('dup')
        s, obj = self.api('POST', path, self.instance_body('dup'))
        self.assert_google_error(s, obj, 409, 'alreadyExists',
                                 message="The resource 'projects/%s/zones/%s/instances/dup' "
                                         "already exists" % (PROJECT, ZONE))
        self.assertEqual(EMU.control('GET', 'counters')['instances_created'], {'dup': 1})

    def test_planted_instances_and_filters(self):
        for name, zone, labels, ts in (
                ('old-one', ZONE, {'owner': 'cloudbrain', 'env': 'ci'},
                 '2020-01-01T00:00:00.000-08:00'),
                ('new-one', ZONE, {'owner': 'cloudbrain', 'env': 'dev'}, None),
                ('foreign', ZONE, {'owner': 'someone'}, None),
                ('east-one', 'us-east1-c', {'owner': 'cloudbrain', 'env': 'ci'}, None)):
            planted = EMU.control('POST', 'instances', {'project': PROJECT, 'zone': zone,
                                                        'name': name, 'labels': labels,
                                                        'creationTimestamp': ts})
            self.assertEqual(planted['name'], name)
        listed = EMU.control('GET', 'instances')['instances']
        self.assertEqual(next(i for i in listed if i['name'] == 'old-one')['creationTimestamp'],
                         '2020-01-01T00:00:00.000-08:00')

        def names(flt, path='/zones/%s/instances' % ZONE):
            s, page = self.api('GET', path, query={'filter': flt})
            self.assertEqual(s, 200, page)
            if 'items' in page and isinstance(page['items'], dict):
                return sorted(i['name'] for scope in page['items'].values()
                              for i in scope.get('instances', []))
            return sorted(i['name'] for i in page.get('items', []))
        self.assertEqual(names('labels.owner = "cloudbrain"'), ['new-one', 'old-one'])
        self.assertEqual(names('labels.owner=cloudbrain'), ['new-one', 'old-one'])
        self.assertEqual(names('(labels.owner = "cloudbrain") AND (labels.env = "ci")'),
                         ['old-one'])
        self.assertEqual(names('labels.owner = "cloudbrain" labels.env = "dev"'), ['new-one'])
        self.assertEqual(names('name = "foreign"'), ['foreign'])
        self.assertEqual(names('status = RUNNING'), ['foreign', 'new-one', 'old-one'])
        self.assertEqual(names('NOT labels.owner = "cloudbrain"'), ['foreign'])
        self.assertEqual(names('name eq ".*\\bold\\-one\\b.*"'), ['old-one'])
        self.assertEqual(names('labels.env = "ci"', '/aggregated/instances'),
                         ['east-one', 'old-one'])
        s, obj = self.api('GET', '/zones/%s/instances' % ZONE, query={'filter': 'labels.x = ('})
        self.assert_google_error(s, obj, 400, 'invalid')

    # --- transport: TLS, state file, batch ------------------------------------------------
    def test_tls(self):
        tmp = tempfile.mkdtemp(prefix='gce-tls-')
        cert, key = os.path.join(tmp, 'cert.pem'), os.path.join(tmp, 'key.pem')
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout',
                        key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext',
                        'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True)
        emu = EmulatorProcess('--tls-cert', cert, '--tls-key', key, workdir=tmp).start()
        try:
            emu.ssl_ctx = ssl.create_default_context(cafile=cert)
            emu.control('POST', 'tokens', {'token': 'tls-token'})
            s, zone = self.api('GET', '/zones/' + ZONE, token='tls-token', emu=emu)
            self.assertEqual(s, 200, zone)
            self.assertTrue(zone['selfLink'].startswith('https://127.0.0.1:%d/compute/v1/'
                                                        % emu.port), zone['selfLink'])
            with self.assertRaises(ssl.SSLError):
                emu.ssl_ctx = ssl.create_default_context()  # not trusting the test CA
                self.api('GET', '/zones/' + ZONE, token='tls-token', emu=emu)
        finally:
            emu.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_state_file_survives_restart(self):
        tmp = tempfile.mkdtemp(prefix='gce-state-')
        state = os.path.join(tmp, 'state.json')
        emu = EmulatorProcess('--state-file', state, '--config', json.dumps(FAST),
                              workdir=tmp).start()
        try:
            emu.control('POST', 'tokens', {'token': 'persist-token'})
            s, op = self.api('POST', '/zones/%s/instances' % ZONE,
                             self.instance_body('kept', labels={'a': 'b'}),
                             token='persist-token', emu=emu)
            self.assertEqual(s, 200, op)
            time.sleep(0.5)
            emu.stop()
            emu.start()
            s, inst = self.api('GET', '/zones/%s/instances/kept' % ZONE, token='persist-token',
                               emu=emu)
            self.assertEqual(s, 200, inst)
            self.assertEqual((inst['status'], inst['labels']), ('RUNNING', {'a': 'b'}))
            self.assertTrue(inst['selfLink'].startswith(emu.base))
        finally:
            emu.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    def test_batch_endpoint(self):
        self.insert('batch-a')
        boundary = 'xyz' + uuid.uuid4().hex
        parts = []
        for i, p in enumerate(['/zones/%s/instances/batch-a' % ZONE,
                               '/zones/%s/instances/missing' % ZONE]):
            parts.append('--%s\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: '
                         'binary\r\nContent-ID: <req+%d>\r\n\r\nGET /compute/v1/projects/%s%s '
                         'HTTP/1.1\r\n\r\n' % (boundary, i, PROJECT, p))
        body = (''.join(parts) + '--%s--\r\n' % boundary).encode()
        s, text, resp = EMU.request('POST', '/batch/compute/v1', raw_body=body, headers={
            'Authorization': 'Bearer ' + TOKEN,
            'Content-Type': 'multipart/mixed; boundary=' + boundary})
        self.assertEqual(s, 200, text)
        self.assertTrue(resp.getheader('Content-Type').startswith('multipart/mixed; boundary='))
        self.assertIn('Content-ID: <response-req+0>', text)
        self.assertIn('HTTP/1.1 200 OK', text)
        self.assertIn('HTTP/1.1 404 Not Found', text)
        self.assertIn('"name": "batch-a"', text)


if __name__ == '__main__':
    unittest.main(verbosity=2)
