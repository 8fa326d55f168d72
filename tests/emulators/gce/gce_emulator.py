#!/usr/bin/env python3
"""Google Compute Engine v1 emulator for tests (stdlib only).

Speaks the Compute Engine v1 REST wire format under /compute/v1/projects/{project}/..., the
OAuth2 JWT-bearer token endpoint (/token), the metadata-server token path, the batch endpoint
(/batch/compute/v1) and a JSON control API under /_emulator/ for tests. See README.md.

    python3 gce_emulator.py --port 0 --port-file /tmp/port [--tls-cert C --tls-key K]
                            [--state-file S] [--config JSON]
"""
import argparse
import base64
import copy
import datetime
import fnmatch
import hashlib
import heapq
import http.server
import ipaddress
import json
import os
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))

NAME_RE = re.compile(r'^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$')
NAME_OR_ID_RE = re.compile(r'^(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})$')
NAME_REGEX_TEXT = '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19})'
PATH_NAME_REGEX_TEXT = '[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?|[1-9][0-9]{0,19}'
UUID_RE = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                     r'[0-9a-fA-F]{12}$')
LABEL_KEY_RE = re.compile(r'^[\w\-]{0,63}$', re.UNICODE)
LABEL_VALUE_RE = re.compile(r'^[\w\-]{0,63}$', re.UNICODE)
EMPTY_FINGERPRINT = '42WmSpB8rSM='
LINK = '@@/'  # placeholder for "<scheme>://<host>/compute/v1/" in stored resources
JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer'
COMPUTE_SCOPES = (
    'https://www.googleapis.com/auth/cloud-platform',
    'https://www.googleapis.com/auth/compute',
    'https://www.googleapis.com/auth/compute.readonly',
)

DEFAULT_CONFIG = {
    'token_lifetime': 3600,          # seconds, for tokens minted by /token and the metadata path
    'accepted_audiences': [],        # JWT aud values accepted besides the token URL itself
    'jwt_max_lifetime': 3600,        # exp - iat must not exceed this
    'jwt_clock_skew': 300,           # tolerated iat in the future, seconds
    'op_pending_delay': 0.05,        # operation PENDING -> RUNNING
    'provisioning_delay': 0.3,       # instance PROVISIONING -> STAGING
    'staging_delay': 0.3,            # instance STAGING -> RUNNING (insert operation DONE)
    'stopping_delay': 0.3,           # instance STOPPING -> gone (delete operation DONE)
    'failure_delay': 0.3,            # insert accepted -> operation DONE with a capacity error
    'reservation_create_delay': 0.3,  # reservation CREATING -> READY
    'reservation_delete_delay': 0.3,  # reservation DELETING -> gone
    'wait_timeout': 2.0,             # operations.wait returns after this long at most
    'timestamp_offset_minutes': -420,  # Google reports times in US Pacific; -07:00 by default
    'metadata_email': 'default@emulator-project.iam.gserviceaccount.com',
    'metadata_project': 'emulator-project',
    'project_number': '123456789012',
    'request_log_limit': 100000,
    'check_scopes': True,
}

MACHINE_TYPES = {
    # name: (guestCpus, memoryMb, sharedCpu)
    'e2-micro': (2, 1024, True), 'e2-small': (2, 2048, True), 'e2-medium': (2, 4096, True),
    'e2-standard-2': (2, 8192, False), 'e2-standard-4': (4, 16384, False),
    'e2-standard-8': (8, 32768, False),
    'n1-standard-1': (1, 3840, False), 'n1-standard-2': (2, 7680, False),
    'n1-standard-4': (4, 15360, False), 'n1-standard-8': (8, 30720, False),
    'n1-highmem-2': (2, 13312, False), 'n1-highcpu-4': (4, 3686, False),
    'n2-standard-2': (2, 8192, False), 'n2-standard-4': (4, 16384, False),
    'n2-standard-8': (8, 32768, False), 'n2-highmem-64': (64, 524288, False),
    'c2-standard-4': (4, 16384, False),
}

DEFAULT_CATALOGUE = {
    'zones': ['us-central1-a', 'us-central1-b', 'us-central1-c', 'us-central1-f',
              'us-east1-b', 'us-east1-c', 'us-east1-d', 'europe-west1-b', 'europe-west1-c',
              'europe-west1-d'],
    'machineTypes': {k: {'guestCpus': v[0], 'memoryMb': v[1], 'isSharedCpu': v[2]}
                     for k, v in MACHINE_TYPES.items()},
    # zone -> list of machine types; zones not listed offer every machine type
    'zoneMachineTypes': {},
    'images': {
        'debian-cloud': [
            {'name': 'debian-12-bookworm-v20250610', 'family': 'debian-12'},
            {'name': 'debian-12-bookworm-v20250513', 'family': 'debian-12',
             'deprecated': 'DEPRECATED'},
            {'name': 'debian-11-bullseye-v20250610', 'family': 'debian-11'},
        ],
        'ubuntu-os-cloud': [
            {'name': 'ubuntu-2204-jammy-v20250612', 'family': 'ubuntu-2204-lts'},
            {'name': 'ubuntu-2404-noble-amd64-v20250606', 'family': 'ubuntu-2404-lts-amd64'},
        ],
        'cos-cloud': [{'name': 'cos-117-18613-263-4', 'family': 'cos-117-lts'}],
    },
}


class ApiError(Exception):
    """A Compute API error rendered as {"error":{"code","message","errors":[...]}}."""

    def __init__(self, code, reason, message, domain='global', status=None, extra=None,
                 headers=None, details=None, error_fields=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.domain = domain
        self.status = status
        self.extra = extra or {}
        self.headers = headers or {}
        self.details = details
        self.error_fields = error_fields or {}

    def body(self):
        err = {'message': self.message, 'domain': self.domain, 'reason': self.reason}
        err.update(self.error_fields)
        out = {'code': self.code, 'message': self.message, 'errors': [err]}
        if self.status:
            out['status'] = self.status
        if self.details:
            out['details'] = self.details
        out.update(self.extra)
        return {'error': out}


def not_found(path):
    return ApiError(404, 'notFound', "The resource '%s' was not found" % path)


def invalid(field, value, why, reason='invalid'):
    return ApiError(400, reason, "Invalid value for field '%s': '%s'. %s" % (field, value, why))


def bad_json(msg):
    return ApiError(400, 'badRequest', 'Invalid JSON payload received. ' + msg,
                    status='INVALID_ARGUMENT')


# --------------------------------------------------------------------------------------------
# RSA / JWT (PKCS#1 v1.5 + SHA-256), DER parsing of public keys.


def _der_read(data, pos):
    tag = data[pos]
    pos += 1
    length = data[pos]
    pos += 1
    if length & 0x80:
        n = length & 0x7F
        length = int.from_bytes(data[pos:pos + n], 'big')
        pos += n
    return tag, data[pos:pos + length], pos + length


def _der_children(data):
    out, pos = [], 0
    while pos < len(data):
        tag, val, pos = _der_read(data, pos)
        out.append((tag, val))
    return out


def _rsa_from_pkcs1(der):
    kids = _der_children(_der_read(der, 0)[1])
    return int.from_bytes(kids[0][1], 'big'), int.from_bytes(kids[1][1], 'big')


def _rsa_from_spki(spki_seq_content):
    kids = _der_children(spki_seq_content)
    algo = _der_children(kids[0][1])
    if algo[0][1] != bytes.fromhex('2a864886f70d010101'):
        raise ValueError('not an RSA key')
    bitstring = kids[1][1]
    return _rsa_from_pkcs1(bitstring[1:])


def parse_public_key(pem):
    """Returns (n, e) from a PEM public key (SPKI or PKCS#1) or X.509 certificate."""
    m = re.search(r'-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----', pem, re.S)
    if not m:
        raise ValueError('no PEM block')
    kind = m.group(1)
    der = base64.b64decode(''.join(m.group(2).split()))
    if kind == 'RSA PUBLIC KEY':
        return _rsa_from_pkcs1(der)
    if kind == 'PUBLIC KEY':
        return _rsa_from_spki(_der_read(der, 0)[1])
    if kind == 'CERTIFICATE':
        cert = _der_children(_der_read(der, 0)[1])
        tbs = _der_children(cert[0][1])
        idx = 1 if tbs[0][0] == 0xA0 else 0  # explicit version tag present
        return _rsa_from_spki(tbs[idx + 5][1])
    raise ValueError('unsupported PEM block %r' % kind)


SHA256_DIGEST_INFO = bytes.fromhex('3031300d060960864801650304020105000420')


def rsa_verify_sha256(n, e, message, signature):
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    em = pow(int.from_bytes(signature, 'big'), e, n).to_bytes(k, 'big')
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    if k < len(t) + 11:
        return False
    expected = b'\x00\x01' + b'\xff' * (k - len(t) - 3) + b'\x00' + t
    return secrets.compare_digest(em, expected)


def b64url_decode(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.urlsafe_b64decode(s + b'=' * (-len(s) % 4))


# --------------------------------------------------------------------------------------------
# Filter expressions (list?filter=...): AIP-160 style and Compute's legacy "field eq regex".


class FilterError(Exception):
    pass


_TOKEN_RE = re.compile(r'''\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>!=|<=|>=|=|:|<|>|!~|~)
                          |"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'
                          |(?P<word>[^\s()=!:<>~"']+))''', re.X)


def _tokenize(text):
    pos, toks = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == '':
                break
            raise FilterError('Invalid filter expression near %r' % text[pos:pos + 20])
        pos = m.end()
        if m.group('lp'):
            toks.append(('(', '('))
        elif m.group('rp'):
            toks.append((')', ')'))
        elif m.group('op'):
            toks.append(('op', m.group('op')))
        elif m.group('dq') is not None:  # keep regex escapes: only \" is a string escape
            toks.append(('str', m.group('dq').replace('\\"', '"')))
        elif m.group('sq') is not None:
            toks.append(('str', m.group('sq').replace("\\'", "'")))
        else:
            toks.append(('word', m.group('word')))
    return toks


class _FilterParser:
    def __init__(self, text):
        self.toks = _tokenize(text)
        self.i = 0

    def peek(self, k=0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else (None, None)

    def take(self):
        t = self.peek()
        self.i += 1
        return t

    def parse(self):
        if not self.toks:
            return lambda r: True
        node = self.sequence()
        if self.i != len(self.toks):
            raise FilterError('Unexpected %r in filter' % (self.peek()[1],))
        return node

    def sequence(self):
        parts = [self.factor()]
        while True:
            kind, val = self.peek()
            if kind is None or kind == ')':
                break
            if kind == 'word' and val.upper() == 'AND':
                self.take()
            parts.append(self.factor())
        return lambda r: all(p(r) for p in parts)

    def factor(self):
        parts = [self.term()]
        while self.peek()[0] == 'word' and self.peek()[1].upper() == 'OR':
            self.take()
            parts.append(self.term())
        return lambda r: any(p(r) for p in parts)

    def term(self):
        kind, val = self.peek()
        if kind == 'word' and val.upper() == 'NOT':
            self.take()
            inner = self.term()
            return lambda r: not inner(r)
        if kind == 'word' and val.startswith('-') and len(val) > 1:
            self.toks[self.i] = ('word', val[1:])
            inner = self.term()
            return lambda r: not inner(r)
        if kind == '(':
            self.take()
            inner = self.sequence()
            if self.take()[0] != ')':
                raise FilterError('Unbalanced parentheses in filter')
            return inner
        return self.comparison()

    def comparison(self):
        kind, field = self.take()
        if kind not in ('word', 'str'):
            raise FilterError('Expected a field name in filter, got %r' % (field,))
        kind2, op = self.peek()
        if kind2 == 'op':
            self.take()
        elif kind2 == 'word' and op in ('eq', 'ne'):
            self.take()
        else:
            raise FilterError('Invalid filter expression: %r has no operator' % field)
        vkind, value = self.take()
        if vkind not in ('word', 'str'):
            raise FilterError('Expected a value after %r %s' % (field, op))
        return _make_cmp(field, op, value)


def _field_values(resource, path):
    cur = [resource]
    for part in path.split('.'):
        nxt = []
        for c in cur:
            if isinstance(c, dict):
                if part in c:
                    v = c[part]
                    nxt.extend(v if isinstance(v, list) else [v])
            elif isinstance(c, list):
                for x in c:
                    if isinstance(x, dict) and part in x:
                        v = x[part]
                        nxt.extend(v if isinstance(v, list) else [v])
        cur = nxt
    return cur


def _scalar(v):
    if isinstance(v, bool):
        return 'true' if v else 'false'
    if v is None:
        return ''
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _make_cmp(field, op, value):
    def values(r):
        return [_scalar(v) for v in _field_values(r, field)]

    def eq(v):
        if '*' in value:
            return fnmatch.fnmatchcase(v, value)
        if v == value:
            return True
        a, b = _num(v), _num(value)
        return a is not None and b is not None and a == b

    def last_seg_eq(v):  # "zone = us-central1-a" matches a zone URL too
        return eq(v) or (v.rsplit('/', 1)[-1] == value and '/' not in value)

    if op == '=':
        return lambda r: any(last_seg_eq(v) for v in values(r))
    if op == '!=':
        return lambda r: not any(last_seg_eq(v) for v in values(r))
    if op == ':':
        if value == '*':
            return lambda r: bool(_field_values(r, field))
        return lambda r: any(eq(v) or value.lower() in v.lower() for v in values(r))
    if op in ('eq', 'ne', '~', '!~'):
        try:
            rx = re.compile(value)
        except re.error as exc:
            raise FilterError('Invalid regular expression %r: %s' % (value, exc))
        if op in ('eq', 'ne'):
            def match(v):
                return rx.fullmatch(v) is not None
        else:
            def match(v):
                return rx.search(v) is not None
        if op in ('eq', '~'):
            return lambda r: any(match(v) for v in values(r))
        return lambda r: not any(match(v) for v in values(r))
    if op in ('<', '>', '<=', '>='):
        def cmpf(v):
            a, b = _num(v), _num(value)
            if a is None or b is None:
                a, b = v, value
            return {'<': a < b, '>': a > b, '<=': a <= b, '>=': a >= b}[op]
        return lambda r: any(cmpf(v) for v in values(r))
    raise FilterError('Unsupported operator %r' % op)


def compile_filter(text):
    return _FilterParser(text or '').parse()


# --------------------------------------------------------------------------------------------
# Request body validation against the Compute v1 schema shipped with gcloud.

SCHEMA = {}
try:
    with open(os.path.join(HERE, 'gce_schema.json')) as _f:
        SCHEMA = json.load(_f)
except OSError:
    pass


def _camel(name):
    parts = name.split('_')
    return parts[0] + ''.join(p[:1].upper() + p[1:] for p in parts[1:])


def _snake(name):
    return re.sub(r'([A-Z])', lambda m: '_' + m.group(1).lower(), name)


def validate_body(obj, msg_name, where='resource'):
    """Raises ApiError like Google's JSON front end for unknown fields / wrong types / enums.

    Returns a copy with snake_case field names normalised to camelCase."""
    spec = SCHEMA.get(msg_name)
    if spec is None or spec == '__map__':
        return obj
    if not isinstance(obj, dict):
        raise bad_json("Invalid value at '%s', expected an object" % where)
    out = {}
    for key, val in obj.items():
        name = key if key in spec else _camel(key)
        if name not in spec:
            raise bad_json('Unknown name "%s" at \'%s\': Cannot find field.' % (key, where))
        f = spec[name]
        sub = '%s.%s' % (where, _snake(name))
        if val is None:
            continue
        if f.get('r'):
            if not isinstance(val, list):
                raise bad_json("Invalid value at '%s', expected a list" % sub)
            out[name] = [_validate_value(v, f, '%s[%d]' % (sub, i)) for i, v in enumerate(val)]
        else:
            out[name] = _validate_value(val, f, sub)
    return out


def _validate_value(val, f, where):
    if 'msg' in f:
        if SCHEMA.get(f['msg']) == '__map__':
            if not isinstance(val, dict):
                raise bad_json("Invalid value at '%s', expected a map" % where)
            return val
        return validate_body(val, f['msg'], where)
    if 'enum' in f:
        if not isinstance(val, str) or val not in f['enum']:
            raise bad_json("Invalid value at '%s' (TYPE_ENUM), %s" % (where, json.dumps(val)))
        return val
    t = f.get('t')
    if t == 'bool' and not isinstance(val, bool):
        raise bad_json("Invalid value at '%s' (TYPE_BOOL), %s" % (where, json.dumps(val)))
    if t in ('int32', 'int64'):
        if isinstance(val, bool) or not isinstance(val, (int, str)) or \
                not re.fullmatch(r'-?\d+', str(val)):
            raise bad_json("Invalid value at '%s' (TYPE_INT64), %s" % (where, json.dumps(val)))
    if t == 'string' and not isinstance(val, str):
        raise bad_json("Invalid value at '%s' (TYPE_STRING), %s" % (where, json.dumps(val)))
    return val


# --------------------------------------------------------------------------------------------
# Helpers


def now():
    return time.time()


def fingerprint(obj):
    if not obj:
        return EMPTY_FINGERPRINT
    raw = hashlib.md5(json.dumps(obj, sort_keys=True).encode()).digest()[:8]
    return base64.b64encode(raw).decode()


def region_of(zone):
    return zone.rsplit('-', 1)[0]


def last_segment(url):
    return url.rstrip('/').rsplit('/', 1)[-1]


def qget(query, key, default=None):
    v = query.get(key)
    if v is None:
        return default
    return v[-1] if isinstance(v, list) else v


# --------------------------------------------------------------------------------------------
# The emulator state


class Emulator:
    def __init__(self, state_file=None, config=None, verbose=False):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.state_file = state_file
        self.verbose = verbose
        self.scheme = 'http'
        self.bound = ('127.0.0.1', 0)
        self._key_cache = {}
        self.log = []
        self.log_seq = 0
        self._dirty = False
        self.reset(config)
        if state_file and os.path.exists(state_file):
            self._load_state()

    # ---- state ---------------------------------------------------------------------------
    def reset(self, config=None):
        with self.lock:
            cfg = copy.deepcopy(DEFAULT_CONFIG)
            if config:
                cfg.update(config)
            self.s = {
                'config': cfg,
                'catalogue': copy.deepcopy(DEFAULT_CATALOGUE),
                'keys': {},          # email -> [{'kid':..,'pem':..}]
                'tokens': {},        # token -> {'email','scopes','expires'(epoch|None),'static'}
                'instances': {},     # id -> stored instance resource (links use LINK)
                'inst_meta': {},     # id -> {'project','zone','reservation','consumed_capacity'}
                'reservations': {},  # id -> stored reservation resource
                'res_meta': {},      # id -> {'project','zone'}
                'operations': {},    # 'project/zone/name' -> stored operation
                'request_ids': {},   # 'project/requestId' -> 'project/zone/opname'
                'capacity': {},      # zone -> {'remaining': int|None, 'code': str}
                'quotas': [],        # [{'metric','limit','region','mode'}]
                'faults': [],
                'events': [],        # heap of [t, seq, event]
                'counters': {'insert_calls': {}, 'instances_created': {}, 'delete_calls': {},
                             'reservation_insert_calls': {}, 'reservations_created': {},
                             'methods': {}, 'requests_total': 0, 'faults_injected': 0,
                             'tokens_issued': 0, 'auth_failures': 0, 'dedup_hits': 0},
                'ips': {'next_internal': 2, 'nat_in_use': []},
                'seq': 0,
                'started': now(),
            }
            self.log = []
            self.log_seq = 0
            self._dirty = True

    def _load_state(self):
        with open(self.state_file) as f:
            data = json.load(f)
        with self.lock:
            self.s.update(data)
            heapq.heapify(self.s['events'])

    def save_state(self):
        if not self.state_file:
            return
        with self.lock:
            if not self._dirty:
                return
            data = json.dumps(self.s)
            self._dirty = False
        tmp = self.state_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write(data)
        os.replace(tmp, self.state_file)

    @property
    def cfg(self):
        return self.s['config']

    def next_id(self):
        self.s['seq'] += 1
        return str(random.randrange(10 ** 18, 9 * 10 ** 18) // 1000 * 1000 + self.s['seq'] % 1000)

    def ts(self, t=None):
        t = now() if t is None else t
        tz = datetime.timezone(datetime.timedelta(minutes=self.cfg['timestamp_offset_minutes']))
        d = datetime.datetime.fromtimestamp(t, tz)
        return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03d' % (d.microsecond // 1000) + \
            d.strftime('%z')[:3] + ':' + d.strftime('%z')[3:]

    # ---- scheduled transitions -----------------------------------------------------------
    def schedule(self, delay, event):
        self.s['seq'] += 1
        heapq.heappush(self.s['events'], [now() + max(0.0, delay), self.s['seq'], event])

    def advance(self):
        with self.lock:
            t = now()
            changed = False
            while self.s['events'] and self.s['events'][0][0] <= t:
                _, _, ev = heapq.heappop(self.s['events'])
                self._apply_event(ev)
                changed = True
            if changed:
                self._dirty = True
                self.cond.notify_all()

    def next_event_time(self):
        with self.lock:
            return self.s['events'][0][0] if self.s['events'] else None

    def _op_set(self, opkey, status, error=None, http_code=None, http_msg=None):
        op = self.s['operations'].get(opkey)
        if not op or op['status'] == 'DONE':
            return
        if status in ('RUNNING', 'DONE') and 'startTime' not in op:
            op['startTime'] = self.ts()
        op['status'] = status
        if status == 'RUNNING':
            op['progress'] = max(op.get('progress', 0), 0)
        if status == 'DONE':
            op['progress'] = 100
            op['endTime'] = self.ts()
            if error:
                op['error'] = {'errors': error}
                op['httpErrorStatusCode'] = http_code
                op['httpErrorMessage'] = http_msg

    def _apply_event(self, ev):
        kind = ev['kind']
        insts, resv = self.s['instances'], self.s['reservations']
        if kind == 'op_running':
            self._op_set(ev['op'], 'RUNNING')
        elif kind == 'inst_staging':
            inst = insts.get(ev['id'])
            if inst and inst['status'] == 'PROVISIONING':
                inst['status'] = 'STAGING'
            self._op_progress(ev.get('op'), 40)
        elif kind == 'inst_running':
            inst = insts.get(ev['id'])
            if inst and inst['status'] in ('PROVISIONING', 'STAGING'):
                inst['status'] = 'RUNNING'
                inst['lastStartTimestamp'] = self.ts()
                inst['cpuPlatform'] = 'Intel Broadwell'
                pending = self.s['inst_meta'].get(ev['id'], {}).pop('nat_pending', [])
                for nic in inst.get('networkInterfaces', []):
                    for ac in nic.get('accessConfigs', []):
                        if 'natIP' not in ac and pending:
                            ac['natIP'] = pending.pop(0)
            self._op_set(ev['op'], 'DONE')
        elif kind == 'inst_fail':
            inst = insts.get(ev['id'])
            if inst and inst['status'] in ('PROVISIONING', 'STAGING'):
                self._remove_instance(ev['id'])
            self._op_set(ev['op'], 'DONE', ev['error'], ev['http_code'], ev['http_msg'])
        elif kind == 'inst_gone':
            if ev['id'] in insts:
                self._remove_instance(ev['id'])
            self._op_set(ev['op'], 'DONE')
        elif kind == 'res_ready':
            r = resv.get(ev['id'])
            if r and r['status'] == 'CREATING':
                r['status'] = 'READY'
            self._op_set(ev['op'], 'DONE')
        elif kind == 'res_fail':
            if ev['id'] in resv:
                self._remove_reservation(ev['id'])
            self._op_set(ev['op'], 'DONE', ev['error'], ev['http_code'], ev['http_msg'])
        elif kind == 'res_gone':
            if ev['id'] in resv:
                self._remove_reservation(ev['id'])
            if ev.get('op'):
                self._op_set(ev['op'], 'DONE')
        elif kind == 'res_expire':
            r = resv.get(ev['id'])
            if r and r['status'] in ('READY', 'CREATING'):
                r['status'] = 'DELETING'
                self.schedule(self.cfg['reservation_delete_delay'],
                              {'kind': 'res_gone', 'id': ev['id']})

    def _op_progress(self, opkey, pct):
        op = self.s['operations'].get(opkey or '')
        if op and op['status'] != 'DONE':
            op['progress'] = max(op.get('progress', 0), pct)

    def _remove_instance(self, iid):
        inst = self.s['instances'].pop(iid, None)
        meta = self.s['inst_meta'].pop(iid, {})
        if not inst:
            return
        for ip in meta.get('nat_pending', []):
            if ip in self.s['ips']['nat_in_use']:
                self.s['ips']['nat_in_use'].remove(ip)
        for nic in inst.get('networkInterfaces', []):
            for ac in nic.get('accessConfigs', []):
                ip = ac.get('natIP')
                if ip in self.s['ips']['nat_in_use']:
                    self.s['ips']['nat_in_use'].remove(ip)
        rid = meta.get('reservation')
        if rid and rid in self.s['reservations']:
            sr = self.s['reservations'][rid]['specificReservation']
            sr['inUseCount'] = str(max(0, int(sr.get('inUseCount', '0')) - 1))

    def _remove_reservation(self, rid):
        self.s['reservations'].pop(rid, None)
        self.s['res_meta'].pop(rid, None)

    def _alloc_nat_ip(self, region='us-central1'):
        """External addresses come from 203.0.113.0/24 (TEST-NET-3): 254 of them."""
        used = set(self.s['ips']['nat_in_use'])
        for i in range(1, 255):
            ip = '203.0.113.%d' % i
            if ip not in used:
                self.s['ips']['nat_in_use'].append(ip)
                return ip
        raise ApiError(403, 'quotaExceeded', "Quota 'IN_USE_ADDRESSES' exceeded.  Limit: 254.0 "
                       'in region %s.' % region, domain='usageLimits')

    def _alloc_internal_ip(self):
        n = self.s['ips']['next_internal']
        self.s['ips']['next_internal'] = n + 1
        return str(ipaddress.IPv4Address('10.128.0.0') + n)

    # ---- lookups -------------------------------------------------------------------------
    def zones(self):
        return self.s['catalogue']['zones']

    def check_zone(self, project, zone):
        if zone not in self.zones():
            raise not_found('projects/%s/zones/%s' % (project, zone))

    def machine_type(self, zone, name):
        cat = self.s['catalogue']
        allowed = cat['zoneMachineTypes'].get(zone)
        if name in cat['machineTypes'] and (allowed is None or name in allowed):
            return cat['machineTypes'][name]
        return None

    def find_image(self, project, name=None, family=None):
        imgs = self.s['catalogue']['images'].get(project, [])
        if name is not None:
            for img in imgs:
                if img['name'] == name:
                    return img
            return None
        cands = [i for i in imgs if i.get('family') == family and
                 i.get('deprecated') not in ('DEPRECATED', 'OBSOLETE', 'DELETED')]
        return sorted(cands, key=lambda i: i['name'])[-1] if cands else None

    def find_instance(self, project, zone, name):
        for iid, meta in self.s['inst_meta'].items():
            if meta['project'] == project and meta['zone'] == zone:
                inst = self.s['instances'][iid]
                if inst['name'] == name or inst['id'] == name:
                    return iid
        return None

    def find_reservation(self, project, zone, name):
        for rid, meta in self.s['res_meta'].items():
            if meta['project'] == project and meta['zone'] == zone:
                r = self.s['reservations'][rid]
                if r['name'] == name or r['id'] == name:
                    return rid
        return None

    # ---- auth ----------------------------------------------------------------------------
    def check_bearer(self, headers):
        auth = headers.get('Authorization', '')
        m = re.match(r'^\s*Bearer\s+(\S+)\s*$', auth, re.I)
        tok = None
        with self.lock:
            if m:
                tok = self.s['tokens'].get(m.group(1))
            ok = tok is not None and (tok['expires'] is None or tok['expires'] > now())
            if not ok:
                self.s['counters']['auth_failures'] += 1
        if not ok:
            raise ApiError(
                401, 'authError',
                'Request had invalid authentication credentials. Expected OAuth 2 access token, '
                'login cookie or other valid authentication credential. See '
                'https://developers.google.com/identity/sign-in/web/devconsole-project.',
                status='UNAUTHENTICATED',
                error_fields={'location': 'Authorization', 'locationType': 'header'},
                headers={'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/"'})
        if self.cfg['check_scopes'] and tok.get('scopes') is not None and \
                not any(s in COMPUTE_SCOPES for s in tok['scopes']):
            raise ApiError(403, 'insufficientPermissions',
                           'Request had insufficient authentication scopes.',
                           status='PERMISSION_DENIED')
        return tok.get('email') or 'emulator-user@example.com'

    def issue_token(self, email, scopes, lifetime=None):
        lifetime = self.cfg['token_lifetime'] if lifetime is None else lifetime
        tok = 'ya29.emu' + secrets.token_urlsafe(48)
        with self.lock:
            self.s['tokens'][tok] = {'email': email, 'scopes': scopes,
                                     'expires': now() + lifetime, 'static': False}
            self.s['counters']['tokens_issued'] += 1
            self._dirty = True
        return {'access_token': tok, 'expires_in': int(lifetime), 'token_type': 'Bearer'}

    def token_endpoint(self, form, token_url):
        def fail(err, desc, code=400):
            return code, {'error': err, 'error_description': desc}
        grant = form.get('grant_type', [''])[-1]
        if grant != JWT_BEARER:
            return fail('unsupported_grant_type', 'Invalid grant_type: %s' % grant)
        assertion = form.get('assertion', [''])[-1]
        parts = assertion.split('.')
        if len(parts) != 3:
            return fail('invalid_grant', 'Invalid JWT: not a valid JWS compact serialization.')
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            sig = b64url_decode(parts[2])
        except (ValueError, TypeError):
            return fail('invalid_grant', 'Invalid JWT: could not decode the header or claims.')
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return fail('invalid_grant', 'Invalid JWT: header and claims must be JSON objects.')
        if header.get('alg') != 'RS256':
            return fail('invalid_grant', 'Invalid JWT: unsupported signing algorithm %r; '
                        'RS256 is required.' % header.get('alg'))
        iss = claims.get('iss')
        with self.lock:
            keys = list(self.s['keys'].get(iss, []))
            cfg = dict(self.cfg)
        if not keys:
            return fail('invalid_grant', 'Invalid grant: account not found')
        kid = header.get('kid')
        if kid:
            keyed = [k for k in keys if k.get('kid') == kid]
            if not keyed:
                return fail('invalid_grant', 'Invalid JWT Signature.')
            keys = keyed
        signed = (parts[0] + '.' + parts[1]).encode()
        verified = False
        for k in keys:
            nk = self._key_cache.get(k['pem'])
            if nk is None:
                nk = parse_public_key(k['pem'])
                self._key_cache[k['pem']] = nk
            if rsa_verify_sha256(nk[0], nk[1], signed, sig):
                verified = True
                break
        if not verified:
            return fail('invalid_grant', 'Invalid JWT Signature.')
        aud = claims.get('aud')
        if aud != token_url and aud not in cfg['accepted_audiences']:
            return fail('invalid_grant', 'Invalid JWT: Failed audience check. The right '
                        'audience is %s' % token_url)
        iat, exp = claims.get('iat'), claims.get('exp')
        t = now()
        timing = 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a ' \
                 'reasonable timeframe. Check your iat and exp values in the JWT claim.'
        if not isinstance(iat, (int, float)) or not isinstance(exp, (int, float)) or \
                isinstance(iat, bool) or isinstance(exp, bool):
            return fail('invalid_grant', timing)
        if exp <= t or exp - iat > cfg['jwt_max_lifetime'] or exp <= iat or \
                iat > t + cfg['jwt_clock_skew']:
            return fail('invalid_grant', timing)
        scope = claims.get('scope')
        if not scope and isinstance(claims.get('target_audience'), str):
            return 200, {'id_token': self._id_token(iss, claims['target_audience'])}
        if not isinstance(scope, str) or not scope.strip():
            return fail('invalid_scope', 'Invalid OAuth scope or ID token audience provided.')
        return 200, self.issue_token(iss, scope.split())

    def _id_token(self, email, audience):
        """An OpenID Connect ID token for target_audience grants (the signature is not real:
        nothing in the emulator verifies it; clients that check it against Google's certs
        will reject it)."""
        t = int(now())
        enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).decode().rstrip('=')
        head = {'alg': 'RS256', 'kid': 'emulator', 'typ': 'JWT'}
        claims = {'aud': audience, 'azp': email, 'email': email, 'email_verified': True,
                  'exp': t + int(self.cfg['token_lifetime']), 'iat': t,
                  'iss': 'https://accounts.google.com', 'sub': str(abs(hash(email)))}
        sig = base64.urlsafe_b64encode(hashlib.sha256((enc(head) + enc(claims)).encode())
                                       .digest() * 8).decode().rstrip('=')
        return enc(head) + '.' + enc(claims) + '.' + sig

    # ---- faults --------------------------------------------------------------------------
    def take_faults(self, method, path, phase):
        """Returns the faults that fire for this request in this phase ('before'/'after')."""
        fired = []
        with self.lock:
            t = now()
            for f in list(self.s['faults']):
                if f.get('when', 'before') != phase:
                    continue
                if f.get('method') and f['method'].upper() != method:
                    continue
                scope_rx = f.get('path_regex') or r'^/(compute|batch)/'
                if not re.search(scope_rx, path):
                    continue
                if f.get('rate') is not None:
                    win = f.setdefault('window', [])
                    while win and win[0] <= t - 1.0:
                        win.pop(0)
                    if len(win) < f['rate']:
                        win.append(t)
                        continue
                if any(x['kind'] == f['kind'] for x in fired):
                    continue
                fired.append(dict(f))
                f['fired'] = f.get('fired', 0) + 1
                if f.get('count') is not None:
                    f['count'] -= 1
                    if f['count'] <= 0:
                        self.s['faults'].remove(f)
            if fired:
                self.s['counters']['faults_injected'] += len(fired)
        return fired

    # ---- request log ---------------------------------------------------------------------
    def log_request(self, method, path, query, client, extra=None):
        with self.lock:
            self.log_seq += 1
            e = {'seq': self.log_seq, 't': now(), 'method': method, 'path': path,
                 'query': query, 'client': client, 'status': None}
            if extra:
                e.update(extra)
            e['time'] = self.ts(e['t'])
            self.log.append(e)
            limit = self.cfg['request_log_limit']
            if len(self.log) > limit:
                del self.log[:len(self.log) - limit]
            if path.startswith('/compute/') or path.startswith('/batch/'):
                self.s['counters']['requests_total'] += 1
            return e

    def count_method(self, name):
        c = self.s['counters']['methods']
        c[name] = c.get(name, 0) + 1

    # ---- compute API ---------------------------------------------------------------------
    def compute(self, method, path, query, body, principal, base):
        """path: everything after /compute/v1/. Returns (status, obj)."""
        self.advance()
        segs = [urllib.parse.unquote(s) for s in path.strip('/').split('/')]
        if len(segs) < 2 or segs[0] != 'projects':
            raise ApiError(404, 'notFound', 'The requested URL /compute/v1/%s was not found on '
                           'this server.' % path)
        project, rest = segs[1], segs[2:]
        if not re.fullmatch(r'[a-z][-a-z0-9.:]{0,99}', project):
            raise ApiError(400, 'invalidParameter', "Invalid value '%s'. Values must match the "
                           "following regular expression: '(?:(?:[-a-z0-9]{1,63}\\.)*(?:[a-z]"
                           "(?:[-a-z0-9]{0,61}[a-z0-9])?):)?(?:[0-9]{1,19}|(?:[a-z0-9](?:[-a-z0-9]"
                           "{0,61}[a-z0-9])?))'" % project)
        r = rest
        n = len(r)
        M = method
        route = None
        try:
            if n == 0 and M == 'GET':
                route = 'projects.get'
                return 200, self.project_get(project)
            if r[0] == 'zones':
                if n == 1 and M == 'GET':
                    route = 'zones.list'
                    return 200, self.simple_list(project, 'zones', query)
                zone = r[1]
                if n == 2 and M == 'GET':
                    route = 'zones.get'
                    self.check_zone(project, zone)
                    return 200, self.zone_resource(project, zone)
                self.check_zone(project, zone)
                coll = r[2]
                if coll == 'instances':
                    if n == 3 and M == 'GET':
                        route = 'instances.list'
                        return 200, self.list_instances(project, zone, query)
                    if n == 3 and M == 'POST':
                        route = 'instances.insert'
                        return 200, self.insert_instance(project, zone, body, query, principal)
                    if n == 4:
                        self._check_path_name(r[3])
                        if M == 'GET':
                            route = 'instances.get'
                            return 200, self.get_instance(project, zone, r[3])
                        if M == 'DELETE':
                            route = 'instances.delete'
                            return 200, self.delete_instance(project, zone, r[3], query, principal)
                if coll == 'operations':
                    if n == 3 and M == 'GET':
                        route = 'zoneOperations.list'
                        return 200, self.list_operations(project, zone, query)
                    if n == 4 and M == 'GET':
                        route = 'zoneOperations.get'
                        return 200, self.get_operation(project, zone, r[3])
                    if n == 4 and M == 'DELETE':
                        route = 'zoneOperations.delete'
                        self.get_operation(project, zone, r[3])
                        with self.lock:
                            self.s['operations'].pop('%s/%s/%s' % (project, zone, r[3]), None)
                        return 204, None
                    if n == 5 and r[4] == 'wait' and M == 'POST':
                        route = 'zoneOperations.wait'
                        return 200, self.wait_operation(project, zone, r[3])
                if coll == 'reservations':
                    if n == 3 and M == 'GET':
                        route = 'reservations.list'
                        return 200, self.list_reservations(project, zone, query)
                    if n == 3 and M == 'POST':
                        route = 'reservations.insert'
                        return 200, self.insert_reservation(project, zone, body, query, principal)
                    if n == 4:
                        self._check_path_name(r[3])
                        if M == 'GET':
                            route = 'reservations.get'
                            return 200, self.get_reservation(project, zone, r[3])
                        if M == 'DELETE':
                            route = 'reservations.delete'
                            return 200, self.delete_reservation(project, zone, r[3], query,
                                                                principal)
                if coll == 'imageFamilyViews' and n == 4 and M == 'GET':
                    route = 'imageFamilyViews.get'
                    img = self.find_image(project, family=r[3])
                    if not img:
                        raise not_found('projects/%s/zones/%s/imageFamilyViews/%s'
                                        % (project, zone, r[3]))
                    return 200, {'image': self.image_resource(project, img)}
                if coll == 'machineTypes':
                    if n == 3 and M == 'GET':
                        route = 'machineTypes.list'
                        return 200, self.simple_list(project, 'machineTypes', query, zone)
                    if n == 4 and M == 'GET':
                        route = 'machineTypes.get'
                        if not self.machine_type(zone, r[3]):
                            raise not_found('projects/%s/zones/%s/machineTypes/%s'
                                            % (project, zone, r[3]))
                        return 200, self.machine_type_resource(project, zone, r[3])
            if r[0] == 'regions':
                if n == 1 and M == 'GET':
                    route = 'regions.list'
                    return 200, self.simple_list(project, 'regions', query)
                if n == 2 and M == 'GET':
                    route = 'regions.get'
                    if r[1] not in {region_of(z) for z in self.zones()}:
                        raise not_found('projects/%s/regions/%s' % (project, r[1]))
                    return 200, self.region_resource(project, r[1])
            if r[0] == 'global' and n >= 2 and r[1] == 'images':
                if n == 2 and M == 'GET':
                    route = 'images.list'
                    return 200, self.simple_list(project, 'images', query)
                if n == 3 and M == 'GET':
                    route = 'images.get'
                    img = self.find_image(project, name=r[2])
                    if not img:
                        raise not_found('projects/%s/global/images/%s' % (project, r[2]))
                    return 200, self.image_resource(project, img)
                if n == 4 and r[2] == 'family' and M == 'GET':
                    route = 'images.getFromFamily'
                    img = self.find_image(project, family=r[3])
                    if not img:
                        raise not_found('projects/%s/global/images/family/%s'
                                        % (project, r[3]))
                    return 200, self.image_resource(project, img)
            if r[0] == 'global' and n == 3 and r[1] == 'networks' and M == 'GET':
                route = 'networks.get'
                if r[2] != 'default':
                    raise not_found('projects/%s/global/networks/%s' % (project, r[2]))
                return 200, {'kind': 'compute#network', 'id': '1000000000000000001',
                             'name': 'default', 'autoCreateSubnetworks': True,
                             'selfLink': LINK + 'projects/%s/global/networks/default' % project,
                             'creationTimestamp': self.ts(self.s['started']),
                             'routingConfig': {'routingMode': 'REGIONAL'},
                             'networkFirewallPolicyEnforcementOrder': 'AFTER_CLASSIC_FIREWALL'}
            if r[0] == 'aggregated' and n == 2 and M == 'GET':
                route = 'aggregated.' + r[1]
                if r[1] in ('instances', 'reservations', 'machineTypes', 'operations'):
                    return 200, self.aggregated_list(project, r[1], query)
            route = 'unknown'
            raise ApiError(404, 'notFound', 'The requested URL /compute/v1/%s was not found on '
                           'this server.' % path)
        finally:
            Emulator._tl.route = route or 'unknown'
            with self.lock:
                self.count_method(route or 'unknown')

    def _check_path_name(self, name):
        if not NAME_OR_ID_RE.match(name):
            raise ApiError(400, 'invalidParameter', "Invalid value '%s'. Values must match the "
                           "following regular expression: '%s'" % (name, PATH_NAME_REGEX_TEXT))

    # ---- catalogue resources -------------------------------------------------------------
    def project_get(self, project):
        with self.lock:
            cpus = sum(self._cpus(i) for i in self.s['instances'].values())
            return {
                'kind': 'compute#project', 'id': self.cfg['project_number'],
                'creationTimestamp': self.ts(self.s['started'] - 86400 * 365), 'name': project,
                'commonInstanceMetadata': {'kind': 'compute#metadata',
                                           'fingerprint': EMPTY_FINGERPRINT},
                'quotas': [{'metric': 'CPUS_ALL_REGIONS', 'limit': 1000.0, 'usage': float(cpus)},
                           {'metric': 'INSTANCES', 'limit': 1000.0,
                            'usage': float(len(self.s['instances']))}],
                'selfLink': LINK + 'projects/%s' % project,
                'defaultServiceAccount': '%s-compute@developer.gserviceaccount.com'
                                         % self.cfg['project_number'],
                'xpnProjectStatus': 'UNSPECIFIED_XPN_PROJECT_STATUS',
                'defaultNetworkTier': 'PREMIUM', 'vmDnsSetting': 'ZONAL_ONLY',
            }

    def _cpus(self, inst):
        mt = self.s['catalogue']['machineTypes'].get(last_segment(inst['machineType']), {})
        return mt.get('guestCpus', 1)

    def zone_resource(self, project, zone):
        idx = self.zones().index(zone)
        return {'kind': 'compute#zone', 'id': str(2000 + idx),
                'creationTimestamp': '1969-12-31T16:00:00.000-08:00', 'name': zone,
                'description': zone, 'status': 'UP',
                'region': LINK + 'projects/%s/regions/%s' % (project, region_of(zone)),
                'selfLink': LINK + 'projects/%s/zones/%s' % (project, zone),
                'availableCpuPlatforms': ['Intel Broadwell', 'Intel Cascade Lake',
                                          'AMD Milan'],
                'supportsPzs': False}

    def region_resource(self, project, region):
        zones = [z for z in self.zones() if region_of(z) == region]
        quotas = []
        with self.lock:
            for q in self.s['quotas']:
                if q.get('region') in (None, region):
                    quotas.append({'metric': q['metric'], 'limit': float(q['limit']),
                                   'usage': float(self._quota_usage(q, region))})
        return {'kind': 'compute#region', 'id': str(1000 + sorted({region_of(z) for z in
                                                                   self.zones()}).index(region)),
                'creationTimestamp': '1969-12-31T16:00:00.000-08:00', 'name': region,
                'description': region, 'status': 'UP',
                'zones': [LINK + 'projects/%s/zones/%s' % (project, z) for z in zones],
                'quotas': quotas, 'selfLink': LINK + 'projects/%s/regions/%s' % (project, region),
                'supportsPzs': False}

    def machine_type_resource(self, project, zone, name):
        mt = self.machine_type(zone, name)
        gb = mt['memoryMb'] / 1024.0
        desc = '%d vCPU%s, %s GB RAM' % (mt['guestCpus'], 's' if mt['guestCpus'] > 1 else '',
                                         ('%.2f' % gb).rstrip('0').rstrip('.'))
        out = {'kind': 'compute#machineType',
               'id': str(int(hashlib.md5(name.encode()).hexdigest()[:12], 16)),
               'creationTimestamp': '1969-12-31T16:00:00.000-08:00', 'name': name,
               'description': desc, 'guestCpus': mt['guestCpus'], 'memoryMb': mt['memoryMb'],
               'imageSpaceGb': 0, 'maximumPersistentDisks': 128,
               'maximumPersistentDisksSizeGb': '263168', 'zone': zone,
               'selfLink': LINK + 'projects/%s/zones/%s/machineTypes/%s' % (project, zone, name),
               'isSharedCpu': mt.get('isSharedCpu', False), 'architecture': 'X86_64'}
        return out

    def image_resource(self, project, img):
        out = {'kind': 'compute#image',
               'id': str(int(hashlib.md5(img['name'].encode()).hexdigest()[:15], 16)),
               'creationTimestamp': '2025-06-10T02:31:05.123-07:00', 'name': img['name'],
               'description': img.get('description', img['name']), 'sourceType': 'RAW',
               'status': 'READY', 'archiveSizeBytes': '1234567890', 'diskSizeGb': '10',
               'licenses': ['https://www.googleapis.com/compute/v1/projects/%s/global/licenses/'
                            '%s' % (project, img.get('family', img['name']))],
               'selfLink': LINK + 'projects/%s/global/images/%s' % (project, img['name']),
               'labelFingerprint': EMPTY_FINGERPRINT,
               'guestOsFeatures': [{'type': 'UEFI_COMPATIBLE'}, {'type': 'VIRTIO_SCSI_MULTIQUEUE'},
                                   {'type': 'GVNIC'}],
               'storageLocations': ['us', 'eu', 'asia'], 'architecture': 'X86_64'}
        if img.get('family'):
            out['family'] = img['family']
        if img.get('deprecated'):
            out['deprecated'] = {'state': img['deprecated']}
        return out

    def simple_list(self, project, kind, query, zone=None):
        if kind == 'zones':
            items = [self.zone_resource(project, z) for z in self.zones()]
            lk, sl = 'compute#zoneList', 'projects/%s/zones' % project
        elif kind == 'regions':
            items = [self.region_resource(project, r) for r in
                     sorted({region_of(z) for z in self.zones()})]
            lk, sl = 'compute#regionList', 'projects/%s/regions' % project
        elif kind == 'machineTypes':
            items = [self.machine_type_resource(project, zone, m) for m in
                     sorted(self.s['catalogue']['machineTypes']) if self.machine_type(zone, m)]
            lk, sl = 'compute#machineTypeList', 'projects/%s/zones/%s/machineTypes' % (project,
                                                                                       zone)
        else:
            items = [self.image_resource(project, i) for i in
                     self.s['catalogue']['images'].get(project, [])]
            lk, sl = 'compute#imageList', 'projects/%s/global/images' % project
        return self.page(items, query, lk, sl)

    # ---- paging / filtering --------------------------------------------------------------
    def page(self, items, query, list_kind, self_link, base_for_filter=None, key=None):
        """Filters, orders and pages `items` like Compute's list methods."""
        flt = qget(query, 'filter', '')
        try:
            pred = compile_filter(flt)
        except FilterError as exc:
            raise ApiError(400, 'invalid', "Invalid value for field 'filter': '%s'. %s"
                           % (flt, exc))
        max_results = qget(query, 'maxResults')
        if max_results is None or max_results == '':
            max_results = 500
        else:
            if not re.fullmatch(r'\d+', str(max_results)):
                raise ApiError(400, 'invalid', "Invalid value for field 'maxResults': '%s'. "
                               "Must be a number." % max_results)
            max_results = int(max_results)
            if max_results > 500:
                raise ApiError(400, 'invalid', "Invalid value for field 'maxResults': '%d'. Must "
                               "be less than or equal to 500" % max_results)
            if max_results == 0:
                max_results = 500
        order = qget(query, 'orderBy')
        if order and order not in ('name', 'creationTimestamp desc', 'creationTimestamp'):
            raise ApiError(400, 'invalid', "Invalid value for field 'orderBy': '%s'. Allowed "
                           "values: name, creationTimestamp desc" % order)
        if key is None:
            key = (lambda x: x['name'])
        if order and order.startswith('creationTimestamp'):
            desc = order.endswith('desc')
            items = sorted(items, key=lambda x: (x.get('creationTimestamp', ''), key(x)),
                           reverse=desc)
            by_key = False
        else:
            items = sorted(items, key=key)
            by_key = True
        if flt:
            base = base_for_filter or 'https://www.googleapis.com/compute/v1/'
            items = [x for x in items if pred(json.loads(json.dumps(x).replace(
                '"' + LINK, '"' + base)))]  # keeps the original objects
        fhash = hashlib.sha1(flt.encode()).hexdigest()[:8]
        token = qget(query, 'pageToken')
        start = 0
        if token:
            try:
                tok = json.loads(b64url_decode(token))
                if tok.get('f') != fhash:
                    raise ValueError('filter changed')
                if by_key:
                    start = len([x for x in items if key(x) <= tok['after']])
                else:
                    start = int(tok['offset'])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, 'invalid', "Invalid value for field 'pageToken': '%s'. "
                               "Invalid page token." % token)
        chunk = items[start:start + max_results]
        out = {'kind': list_kind, 'id': self_link, 'selfLink': LINK + self_link}
        if chunk:
            out['items'] = chunk
        if start + max_results < len(items):
            tok = {'f': fhash}
            if by_key:
                tok['after'] = key(chunk[-1])
            else:
                tok['offset'] = start + max_results
            out['nextPageToken'] = base64.urlsafe_b64encode(
                json.dumps(tok).encode()).decode().rstrip('=')
        return out

    def aggregated_list(self, project, kind, query):
        with self.lock:
            items = []
            if kind == 'instances':
                for iid, meta in self.s['inst_meta'].items():
                    if meta['project'] == project:
                        items.append((meta['zone'], self.s['instances'][iid]))
            elif kind == 'reservations':
                for rid, meta in self.s['res_meta'].items():
                    if meta['project'] == project:
                        items.append((meta['zone'], self.s['reservations'][rid]))
            elif kind == 'operations':
                for k, op in self.s['operations'].items():
                    p, z, _ = k.split('/', 2)
                    if p == project:
                        items.append((z, op))
            else:
                for z in self.zones():
                    for m in sorted(self.s['catalogue']['machineTypes']):
                        if self.machine_type(z, m):
                            items.append((z, self.machine_type_resource(project, z, m)))
            items = copy.deepcopy(items)
            zones = list(self.zones())
        zone_order = {z: i for i, z in enumerate(zones)}
        scope_of = {}
        for z, it in items:
            scope_of[id(it)] = z

        def key(it):
            return '%04d/%s' % (zone_order.get(scope_of[id(it)], 9999), it['name'])
        page = self.page([it for _, it in items], query, 'x', 'x',
                         getattr(self._tl, 'base', None), key=key)
        lk = {'instances': 'compute#instanceAggregatedList',
              'reservations': 'compute#reservationAggregatedList',
              'operations': 'compute#operationAggregatedList',
              'machineTypes': 'compute#machineTypeAggregatedList'}[kind]
        out = {'kind': lk, 'id': 'projects/%s/aggregated/%s' % (project, kind), 'items': {},
               'selfLink': LINK + 'projects/%s/aggregated/%s' % (project, kind)}
        by_zone = {}
        for it in page.get('items', []):
            by_zone.setdefault(scope_of[id(it)], []).append(it)
        for z in zones:
            scope = 'zones/%s' % z
            if z in by_zone:
                out['items'][scope] = {kind: by_zone[z]}
            else:
                out['items'][scope] = {'warning': {
                    'code': 'NO_RESULTS_ON_PAGE',
                    'message': "There are no results for scope '%s' on this page." % scope,
                    'data': [{'key': 'scope', 'value': scope}]}}
        if 'nextPageToken' in page:
            out['nextPageToken'] = page['nextPageToken']
        return out

    # ---- operations ----------------------------------------------------------------------
    def new_operation(self, project, zone, op_type, target_path, target_id, principal):
        t = now()
        name = 'operation-%d-%s-%s-%s' % (int(t * 1000), secrets.token_hex(7)[:13],
                                          secrets.token_hex(4), secrets.token_hex(4))
        op = {'kind': 'compute#operation', 'id': self.next_id(), 'name': name,
              'zone': LINK + 'projects/%s/zones/%s' % (project, zone),
              'operationType': op_type, 'targetLink': LINK + target_path,
              'targetId': target_id, 'status': 'PENDING', 'user': principal, 'progress': 0,
              'insertTime': self.ts(t),
              'selfLink': LINK + 'projects/%s/zones/%s/operations/%s' % (project, zone, name)}
        key = '%s/%s/%s' % (project, zone, name)
        self.s['operations'][key] = op
        if self.cfg['op_pending_delay'] <= 0:
            self._op_set(key, 'RUNNING')
        else:
            self.schedule(self.cfg['op_pending_delay'], {'kind': 'op_running', 'op': key})
        return key, op

    def get_operation(self, project, zone, name):
        with self.lock:
            op = self.s['operations'].get('%s/%s/%s' % (project, zone, name))
            if not op:
                raise not_found('projects/%s/zones/%s/operations/%s' % (project, zone, name))
            return copy.deepcopy(op)

    def wait_operation(self, project, zone, name):
        deadline = now() + float(self.cfg['wait_timeout'])
        key = '%s/%s/%s' % (project, zone, name)
        while True:
            self.advance()
            with self.lock:
                op = self.s['operations'].get(key)
                if not op:
                    raise not_found('projects/%s/zones/%s/operations/%s' % (project, zone, name))
                if op['status'] == 'DONE' or now() >= deadline:
                    return copy.deepcopy(op)
                nxt = self.s['events'][0][0] if self.s['events'] else deadline
                self.cond.wait(max(0.005, min(nxt, deadline) - now()))

    def list_operations(self, project, zone, query):
        with self.lock:
            items = [copy.deepcopy(op) for k, op in self.s['operations'].items()
                     if k.startswith('%s/%s/' % (project, zone))]
        return self.page(items, query, 'compute#operationList',
                         'projects/%s/zones/%s/operations' % (project, zone),
                         getattr(self._tl, 'base', None))

    def _dedupe(self, project, query):
        rid = qget(query, 'requestId')
        if rid is None:
            return None, None
        if not UUID_RE.match(rid) or rid == '00000000-0000-0000-0000-000000000000':
            raise ApiError(400, 'invalid', "Invalid value for field 'requestId': '%s'. The "
                           "request ID must be a valid UUID with the exception that zero UUID "
                           "is not supported (00000000-0000-0000-0000-000000000000)." % rid)
        key = '%s/%s' % (project, rid.lower())
        opkey = self.s['request_ids'].get(key)
        if opkey and opkey in self.s['operations']:
            self.s['counters']['dedup_hits'] += 1
            return key, copy.deepcopy(self.s['operations'][opkey])
        return key, None

    # ---- instances -----------------------------------------------------------------------
    def get_instance(self, project, zone, name):
        with self.lock:
            iid = self.find_instance(project, zone, name)
            if iid is None:
                raise not_found('projects/%s/zones/%s/instances/%s' % (project, zone, name))
            return copy.deepcopy(self.s['instances'][iid])

    def list_instances(self, project, zone, query):
        with self.lock:
            items = [copy.deepcopy(self.s['instances'][iid])
                     for iid, m in self.s['inst_meta'].items()
                     if m['project'] == project and m['zone'] == zone]
        return self.page(items, query, 'compute#instanceList',
                         'projects/%s/zones/%s/instances' % (project, zone),
                         getattr(self._tl, 'base', None))

    def _parse_json(self, body):
        if not body:
            raise bad_json('Request body is empty.')
        try:
            obj = json.loads(body)
        except ValueError as exc:
            raise bad_json('Unexpected token.\n%s' % exc)
        if not isinstance(obj, dict):
            raise bad_json("Invalid value at 'resource', expected an object")
        return obj

    def _resolve_machine_type(self, project, zone, mt, field='resource.machineType'):
        if not mt:
            raise ApiError(400, 'required', "Invalid value for field '%s': ''. Machine type "
                           "must be specified." % field)
        m = re.match(r'^(?:.*/)?(?:projects/([^/]+)/)?zones/([^/]+)/machineTypes/([^/]+)$', mt)
        if m:
            mzone, mname = m.group(2), m.group(3)
            if m.group(1) and m.group(1) != project:
                raise invalid(field, mt, 'Machine type must be in project \'%s\'.' % project)
            if mzone != zone:
                raise invalid(field, mt, "Machine type specified '%s' is in a different scope "
                              "than the instance." % mt)
        elif '/' not in mt:
            mname = mt
        else:
            raise invalid(field, mt, 'Invalid machine type URL.')
        if mname.startswith('custom-'):
            cm = re.fullmatch(r'custom-(\d+)-(\d+)', mname)
            if cm:
                return mname, {'guestCpus': int(cm.group(1)), 'memoryMb': int(cm.group(2))}
        spec = self.machine_type(zone, mname)
        if not spec:
            raise invalid(field, mt, "Machine type with name '%s' does not exist in zone '%s'."
                          % (mname, zone))
        return mname, spec

    def _resolve_image(self, project, src, field):
        m = re.match(r'^(?:.*/compute/(?:v1|beta|alpha)/)?(?:projects/([^/]+)/)?(?:global/images/'
                     r'(?:(family)/)?|zones/([^/]+)/(imageFamilyViews)/)([^/]+)$', src)
        if not m:
            raise invalid(field, src, 'The URL is malformed.')
        iproj = m.group(1) or project
        if m.group(4):
            img = self.find_image(iproj, family=m.group(5))
            path = 'projects/%s/zones/%s/imageFamilyViews/%s' % (iproj, m.group(3), m.group(5))
        elif m.group(2):
            img = self.find_image(iproj, family=m.group(5))
            path = 'projects/%s/global/images/family/%s' % (iproj, m.group(5))
        else:
            img = self.find_image(iproj, name=m.group(5))
            path = 'projects/%s/global/images/%s' % (iproj, m.group(5))
        if not img:
            raise not_found(path)
        return iproj, img

    def _check_labels(self, labels, field='resource.labels'):
        if labels is None:
            return {}
        if not isinstance(labels, dict):
            raise bad_json("Invalid value at '%s', expected a map" % field)
        if len(labels) > 64:
            raise invalid(field, '', 'Resource cannot have more than 64 labels.')
        for k, v in labels.items():
            if not isinstance(v, str):
                raise bad_json("Invalid value at '%s[%s]' (TYPE_STRING)" % (field, k))
            if not k or not LABEL_KEY_RE.match(k) or not k[0].isalpha() or k != k.lower():
                raise invalid(field, '', "Label key '%s' violates format constraints. The key "
                              "must start with a lowercase character, can only contain "
                              "lowercase letters, numeric characters, underscores and dashes. "
                              "The key can be at most 63 characters long. International "
                              "characters are allowed." % k)
            if not LABEL_VALUE_RE.match(v) or v != v.lower():
                raise invalid(field, '', "Label value '%s' violates format constraints. The "
                              "value can only contain lowercase letters, numeric characters, "
                              "underscores and dashes. The value can be at most 63 characters "
                              "long. International characters are allowed." % v)
        return dict(labels)

    def _quota_usage(self, q, region, extra_inst=None):
        metric = q['metric'].upper()
        total = 0
        insts = []
        for iid, m in self.s['inst_meta'].items():
            if q.get('region') is None or region_of(m['zone']) == (q.get('region') or region):
                insts.append((self.s['instances'][iid], m))
        if extra_inst is not None:
            insts.append(extra_inst)
        for inst, m in insts:
            mt = last_segment(inst['machineType'])
            cpus = m.get('cpus') or self.s['catalogue']['machineTypes'].get(mt, {}).get(
                'guestCpus', 1)
            sched = inst.get('scheduling', {})
            spot = sched.get('preemptible') or sched.get('provisioningModel') == 'SPOT'
            if metric == 'INSTANCES':
                total += 1
            elif metric == 'CPUS' or metric == 'CPUS_ALL_REGIONS':
                total += cpus
            elif metric == 'PREEMPTIBLE_CPUS':
                total += cpus if spot else 0
            elif metric.endswith('_CPUS'):
                fam = metric[:-5].lower()
                total += cpus if mt.startswith(fam + '-') else 0
        return total

    def _check_quotas(self, zone, inst, meta):
        region = region_of(zone)
        for q in self.s['quotas']:
            if q.get('region') not in (None, region):
                continue
            if self._quota_usage(q, region) == self._quota_usage(q, region, (inst, meta)):
                continue  # this instance doesn't count against the metric
            if self._quota_usage(q, region, (inst, meta)) > q['limit']:
                where = 'in region %s' % region if q.get('region') else 'globally'
                msg = "Quota '%s' exceeded.  Limit: %.1f %s." % (q['metric'], q['limit'], where)
                return q, msg
        return None, None

    def _quota_details(self, q, zone):
        dims = {'region': region_of(zone)} if q.get('region') else {'global': 'global'}
        return {'quotaInfo': {'metricName': 'compute.googleapis.com/%s' % q['metric'].lower(),
                              'limitName': '%s-per-project-region' % q['metric']
                              if q.get('region') else '%s-per-project' % q['metric'],
                              'dimensions': dims, 'limit': q['limit']}}

    def _capacity_error(self, project, zone, mt_name):
        cap = self.s['capacity'].get(zone, {})
        code = cap.get('code') or 'ZONE_RESOURCE_POOL_EXHAUSTED'
        zpath = 'projects/%s/zones/%s' % (project, zone)
        if code == 'ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS':
            msg = ("The zone '%s' does not have enough resources available to fulfill the "
                   "request.  '(resource type:compute)'." % zpath)
            others = [z for z in self.zones() if region_of(z) == region_of(zone) and z != zone
                      and self.s['capacity'].get(z, {}).get('remaining', None) != 0]
            details = [
                {'help': {'links': [{'description': 'Troubleshooting documentation',
                                     'url': 'https://cloud.google.com/compute/docs/'
                                            'resource-error'}]}},
                {'localizedMessage': {'locale': 'en-US', 'message': (
                    'A %s VM instance is currently unavailable in the %s zone. Alternatively, '
                    'you can try your request again with a different VM hardware configuration '
                    'or at a later time. For more information, see the troubleshooting '
                    'documentation.' % (mt_name, zone))}},
                {'errorInfo': {'domain': 'compute.googleapis.com',
                               'reason': 'resource_availability',
                               'metadatas': {'attachment': '', 'vmType': mt_name, 'zone': zone,
                                             'zonesAvailable': ','.join(others)}}}]
            return [{'code': code, 'message': msg, 'errorDetails': details}]
        msg = ("The zone '%s' does not have enough resources available to fulfill the "
               "request.  Try a different zone, or try again later." % zpath)
        return [{'code': code, 'message': msg}]

    def _take_capacity(self, zone, units):
        cap = self.s['capacity'].get(zone)
        if not cap or cap.get('remaining') is None:
            return True
        if cap['remaining'] >= units:
            cap['remaining'] -= units
            return True
        return False

    def insert_instance(self, project, zone, body, query, principal):
        obj = self._parse_json(body)
        with self.lock:
            rkey, prev = self._dedupe(project, query)
            name_for_count = obj.get('name') if isinstance(obj.get('name'), str) else ''
            ic = self.s['counters']['insert_calls']
            ic[name_for_count] = ic.get(name_for_count, 0) + 1
            if prev:
                return prev
            obj = validate_body(obj, 'Instance')
            name = obj.get('name', '')
            if not name:
                raise ApiError(400, 'required', "Invalid value for field 'resource.name': ''. "
                               "Must be a match of regex '%s'" % NAME_REGEX_TEXT)
            if not NAME_RE.match(name):
                raise invalid('resource.name', name, "Must be a match of regex '%s'"
                              % NAME_REGEX_TEXT)
            mt_name, mt = self._resolve_machine_type(project, zone, obj.get('machineType'))
            labels = self._check_labels(obj.get('labels'))
            disks_in = obj.get('disks') or []
            if not disks_in:
                raise ApiError(400, 'required', "Invalid value for field 'resource.disks': ''. "
                               "At least one disk must be specified.")
            if self.find_instance(project, zone, name) is not None:
                raise ApiError(409, 'alreadyExists', "The resource 'projects/%s/zones/%s/"
                               "instances/%s' already exists" % (project, zone, name))
            disks = []
            boot_seen = False
            for i, d in enumerate(disks_in):
                field = 'resource.disks[%d]' % i
                ip = d.get('initializeParams') or {}
                boot = bool(d.get('boot', i == 0))
                if boot:
                    if boot_seen:
                        raise invalid(field + '.boot', 'true', 'Only one boot disk is allowed.')
                    boot_seen = True
                dname = ip.get('diskName') or (name if i == 0 else '%s-%d' % (name, i))
                out = {'kind': 'compute#attachedDisk', 'type': d.get('type', 'PERSISTENT'),
                       'mode': d.get('mode', 'READ_WRITE'),
                       'source': LINK + 'projects/%s/zones/%s/disks/%s' % (project, zone, dname),
                       'deviceName': d.get('deviceName') or ('persistent-disk-%d' % i),
                       'index': i, 'boot': boot, 'autoDelete': d.get('autoDelete', boot),
                       'interface': d.get('interface', 'SCSI'), 'diskSizeGb':
                           str(ip.get('diskSizeGb') or '10'), 'architecture': 'X86_64'}
                if d.get('source'):
                    out['source'] = d['source'] if '://' in d['source'] else \
                        LINK + d['source']
                elif ip.get('sourceImage'):
                    iproj, img = self._resolve_image(project, ip['sourceImage'],
                                                     field + '.initializeParams.sourceImage')
                    out['licenses'] = self.image_resource(iproj, img)['licenses']
                    out['guestOsFeatures'] = self.image_resource(iproj, img)['guestOsFeatures']
                elif not ip.get('sourceSnapshot'):
                    raise invalid(field + '.initializeParams', '', 'Source image, snapshot or '
                                  'disk must be specified.')
                disks.append(out)
            if not boot_seen:
                raise invalid('resource.disks', '', 'Boot disk must be specified.')
            sched = dict(obj.get('scheduling') or {})
            spot = sched.get('provisioningModel') == 'SPOT'
            pre = bool(sched.get('preemptible'))
            if (spot or pre) and sched.get('automaticRestart') is True:
                raise invalid('resource.scheduling.automaticRestart', 'true',
                              'Preemptible instances cannot be automatically restarted.')
            if (spot or pre) and sched.get('onHostMaintenance') == 'MIGRATE':
                raise invalid('resource.scheduling.onHostMaintenance', 'MIGRATE',
                              'Scheduling must have preemptible be false when OnHostMaintenance '
                              'isn\'t TERMINATE.')
            if spot or pre:
                sched.setdefault('onHostMaintenance', 'TERMINATE')
                sched.setdefault('automaticRestart', False)
                sched.setdefault('preemptible', pre)
                sched.setdefault('provisioningModel', 'SPOT' if spot else 'STANDARD')
                if spot:
                    sched.setdefault('instanceTerminationAction', 'STOP')
            else:
                sched.setdefault('onHostMaintenance', 'MIGRATE')
                sched.setdefault('automaticRestart', True)
                sched.setdefault('preemptible', False)
                sched.setdefault('provisioningModel', 'STANDARD')
            nics = []
            for i, nic in enumerate(obj.get('networkInterfaces') or [{}]):
                out = {'kind': 'compute#networkInterface',
                       'network': LINK + 'projects/%s/global/networks/default' % project,
                       'subnetwork': LINK + 'projects/%s/regions/%s/subnetworks/default'
                                     % (project, region_of(zone)),
                       'networkIP': nic.get('networkIP') or self._alloc_internal_ip(),
                       'name': 'nic%d' % i, 'fingerprint': fingerprint({'n': i, 'id': name}),
                       'stackType': nic.get('stackType', 'IPV4_ONLY')}
                if nic.get('network'):
                    out['network'] = nic['network'] if '://' in nic['network'] else \
                        LINK + re.sub(r'^/', '', nic['network'])
                acs = []
                for ac in nic.get('accessConfigs') or []:
                    a = {'kind': 'compute#accessConfig', 'type': ac.get('type', 'ONE_TO_ONE_NAT'),
                         'name': ac.get('name', 'External NAT'),
                         'networkTier': ac.get('networkTier', 'PREMIUM')}
                    if ac.get('natIP'):
                        a['natIP'] = ac['natIP']
                    acs.append(a)
                if acs:
                    out['accessConfigs'] = acs
                nics.append(out)
            md = obj.get('metadata') or {}
            items = [dict(it) for it in md.get('items') or []]
            metadata = {'kind': 'compute#metadata', 'fingerprint': fingerprint(items)}
            if items:
                metadata['items'] = items
            ra = dict(obj.get('reservationAffinity') or {'consumeReservationType':
                                                          'ANY_RESERVATION'})
            iid = self.next_id()
            t = now()
            inst = {
                'kind': 'compute#instance', 'id': iid, 'creationTimestamp': self.ts(t),
                'name': name, 'tags': {'fingerprint': fingerprint(obj.get('tags', {}).get(
                    'items'))},
                'machineType': LINK + 'projects/%s/zones/%s/machineTypes/%s' % (project, zone,
                                                                                mt_name),
                'status': 'PROVISIONING',
                'zone': LINK + 'projects/%s/zones/%s' % (project, zone),
                'canIpForward': bool(obj.get('canIpForward', False)),
                'networkInterfaces': nics, 'disks': disks, 'metadata': metadata,
                'selfLink': LINK + 'projects/%s/zones/%s/instances/%s' % (project, zone, name),
                'scheduling': sched, 'cpuPlatform': 'Unknown CPU Platform',
                'labelFingerprint': fingerprint(labels), 'startRestricted': False,
                'deletionProtection': bool(obj.get('deletionProtection', False)),
                'reservationAffinity': ra, 'fingerprint': fingerprint({'id': iid}),
                'satisfiesPzi': False,
            }
            if obj.get('description'):
                inst['description'] = obj['description']
            if obj.get('tags', {}).get('items'):
                inst['tags']['items'] = list(obj['tags']['items'])
            if labels:
                inst['labels'] = labels
            if obj.get('serviceAccounts'):
                inst['serviceAccounts'] = obj['serviceAccounts']
            if obj.get('hostname'):
                inst['hostname'] = obj['hostname']
            for k in ('shieldedInstanceConfig', 'guestAccelerators', 'minCpuPlatform',
                      'advancedMachineFeatures', 'confidentialInstanceConfig',
                      'resourcePolicies', 'displayDevice', 'keyRevocationActionType'):
                if k in obj:
                    inst[k] = obj[k]
            meta = {'project': project, 'zone': zone, 'reservation': None,
                    'cpus': mt['guestCpus']}
            # Quota (synchronous 403 or operation error)
            q, qmsg = self._check_quotas(zone, inst, meta)
            if q and q.get('mode', 'sync') == 'sync':
                raise ApiError(403, 'quotaExceeded', qmsg, domain='usageLimits', details=[
                    {'@type': 'type.googleapis.com/google.rpc.ErrorInfo',
                     'reason': 'QUOTA_EXCEEDED', 'domain': 'compute.googleapis.com',
                     'metadata': {'quota_metric': q['metric'], 'quota_limit': str(q['limit'])}}])
            # Reservations
            rtype = ra.get('consumeReservationType', 'ANY_RESERVATION')
            res_id = None
            if rtype == 'SPECIFIC_RESERVATION':
                if spot or pre:
                    raise invalid('resource.reservationAffinity', 'SPECIFIC_RESERVATION',
                                  'Spot VMs and preemptible instances can not consume '
                                  'reservations.')
                if ra.get('key') not in ('compute.googleapis.com/reservation-name',
                                         'googleapis.com/reservation-name'):
                    raise invalid('resource.reservationAffinity.key', ra.get('key', ''),
                                  'To target a reservation by name, specify '
                                  'compute.googleapis.com/reservation-name as the key.')
                vals = ra.get('values') or []
                if len(vals) != 1:
                    raise invalid('resource.reservationAffinity.values', ','.join(vals),
                                  'Exactly one reservation must be specified.')
                rname = last_segment(vals[0])
                res_id = self.find_reservation(project, zone, rname)
                rpath = 'projects/%s/zones/%s/reservations/%s' % (project, zone, rname)
                if res_id is None:
                    raise ApiError(400, 'invalid', 'Could not find the given reservation with '
                                   'the following name: %s' % rpath)
                res = self.s['reservations'][res_id]
                if res['status'] != 'READY':
                    raise ApiError(400, 'resourceNotReady', 'Cannot insert instance to a '
                                   'reservation with status %s, as it requires reservation to '
                                   'be in READY state.' % res['status'])
                if not res.get('specificReservationRequired'):
                    raise ApiError(400, 'invalid', "Reservation '%s' can not be targeted as "
                                   "specificReservationRequired is not set." % rpath)
                sr = res['specificReservation']
                if sr['instanceProperties'].get('machineType') != mt_name:
                    raise ApiError(400, 'invalid', 'Reservation %s is incorrect for the '
                                   'requested resources. Machine type %s does not match '
                                   'reserved machine type %s.'
                                   % (rpath, mt_name, sr['instanceProperties'].get(
                                       'machineType')))
            elif rtype == 'ANY_RESERVATION' and not (spot or pre):
                for rid, rm in self.s['res_meta'].items():
                    r = self.s['reservations'][rid]
                    sr = r['specificReservation']
                    if rm['project'] == project and rm['zone'] == zone and \
                            r['status'] == 'READY' and not r.get('specificReservationRequired') \
                            and sr['instanceProperties'].get('machineType') == mt_name and \
                            int(sr['inUseCount']) < int(sr['count']):
                        res_id = rid
                        break
            # Insert accepted: record instance, operation, outcome. External addresses are
            # taken now (so running out is a synchronous error) and shown once RUNNING.
            need = sum(1 for nic in nics for ac in nic.get('accessConfigs', [])
                       if 'natIP' not in ac)
            if need > 254 - len(self.s['ips']['nat_in_use']):
                raise ApiError(403, 'quotaExceeded', "Quota 'IN_USE_ADDRESSES' exceeded.  "
                               "Limit: 254.0 in region %s." % region_of(zone),
                               domain='usageLimits')
            meta['nat_pending'] = [self._alloc_nat_ip(region_of(zone)) for _ in range(need)]
            self.s['instances'][iid] = inst
            self.s['inst_meta'][iid] = meta
            opkey, op = self.new_operation(project, zone, 'insert',
                                           'projects/%s/zones/%s/instances/%s'
                                           % (project, zone, name), iid, principal)
            meta['op'] = opkey
            if rkey:
                self.s['request_ids'][rkey] = opkey
            cfg = self.cfg
            fail = None
            if q:  # quota in operation mode
                fail = ([{'code': 'QUOTA_EXCEEDED', 'message': qmsg,
                          'errorDetails': [self._quota_details(q, zone)]}], 403, 'FORBIDDEN')
            elif res_id is not None:
                sr = self.s['reservations'][res_id]['specificReservation']
                if int(sr['inUseCount']) >= int(sr['count']):
                    rpath = 'projects/%s/zones/%s/reservations/%s' % (
                        project, zone, self.s['reservations'][res_id]['name'])
                    fail = ([{'code': 'RESERVATION_CAPACITY_EXCEEDED',
                              'message': 'Reservation %s does not have sufficient capacity for '
                                         'the requested resources.' % rpath}], 400,
                            'BAD REQUEST')
                else:
                    sr['inUseCount'] = str(int(sr['inUseCount']) + 1)
                    meta['reservation'] = res_id
            elif not self._take_capacity(zone, 1):
                fail = (self._capacity_error(project, zone, mt_name), 503, 'SERVICE UNAVAILABLE')
            if fail:
                self.schedule(cfg['failure_delay'], {'kind': 'inst_fail', 'id': iid, 'op': opkey,
                                                     'error': fail[0], 'http_code': fail[1],
                                                     'http_msg': fail[2]})
            else:
                created = self.s['counters']['instances_created']
                created[name] = created.get(name, 0) + 1
                d1 = cfg['provisioning_delay']
                self.schedule(d1, {'kind': 'inst_staging', 'id': iid, 'op': opkey})
                self.schedule(d1 + cfg['staging_delay'], {'kind': 'inst_running', 'id': iid,
                                                          'op': opkey})
            self._dirty = True
            return copy.deepcopy(op)

    def delete_instance(self, project, zone, name, query, principal):
        with self.lock:
            rkey, prev = self._dedupe(project, query)
            dc = self.s['counters']['delete_calls']
            dc[name] = dc.get(name, 0) + 1
            if prev:
                return prev
            iid = self.find_instance(project, zone, name)
            if iid is None:
                raise not_found('projects/%s/zones/%s/instances/%s' % (project, zone, name))
            inst = self.s['instances'][iid]
            if inst.get('deletionProtection'):
                raise ApiError(400, 'resourceInUseByAnotherResource', "Invalid resource usage: "
                               "'Resource cannot be deleted if it's protected against deletion.'.")
            opkey, op = self.new_operation(project, zone, 'delete',
                                           'projects/%s/zones/%s/instances/%s'
                                           % (project, zone, inst['name']), iid, principal)
            if rkey:
                self.s['request_ids'][rkey] = opkey
            if inst['status'] != 'STOPPING':
                inst['status'] = 'STOPPING'
                self.schedule(self.cfg['stopping_delay'], {'kind': 'inst_gone', 'id': iid,
                                                           'op': opkey})
            else:
                self.schedule(self.cfg['stopping_delay'], {'kind': 'inst_gone', 'id': iid,
                                                           'op': opkey})
            self._dirty = True
            return copy.deepcopy(op)

    # ---- reservations --------------------------------------------------------------------
    def get_reservation(self, project, zone, name):
        with self.lock:
            rid = self.find_reservation(project, zone, name)
            if rid is None:
                raise not_found('projects/%s/zones/%s/reservations/%s' % (project, zone, name))
            return copy.deepcopy(self.s['reservations'][rid])

    def list_reservations(self, project, zone, query):
        with self.lock:
            items = [copy.deepcopy(self.s['reservations'][rid])
                     for rid, m in self.s['res_meta'].items()
                     if m['project'] == project and m['zone'] == zone]
        return self.page(items, query, 'compute#reservationList',
                         'projects/%s/zones/%s/reservations' % (project, zone),
                         getattr(self._tl, 'base', None))

    def insert_reservation(self, project, zone, body, query, principal):
        obj = self._parse_json(body)
        with self.lock:
            rkey, prev = self._dedupe(project, query)
            nm = obj.get('name') if isinstance(obj.get('name'), str) else ''
            rc = self.s['counters']['reservation_insert_calls']
            rc[nm] = rc.get(nm, 0) + 1
            if prev:
                return prev
            obj = validate_body(obj, 'Reservation')
            name = obj.get('name', '')
            if not NAME_RE.match(name):
                raise invalid('resource.name', name, "Must be a match of regex '%s'"
                              % NAME_REGEX_TEXT)
            sr_in = obj.get('specificReservation')
            if not sr_in:
                raise ApiError(400, 'required', "Invalid value for field "
                               "'resource.specificReservation': ''. Specific reservation must be "
                               "specified.")
            count = int(sr_in.get('count') or 0)
            if count <= 0:
                raise invalid('resource.specificReservation.count', str(count),
                              'Reservation count must be greater than 0.')
            props = sr_in.get('instanceProperties') or {}
            mt_name, _ = self._resolve_machine_type(
                project, zone, props.get('machineType'),
                'resource.specificReservation.instanceProperties.machineType')
            if self.find_reservation(project, zone, name) is not None:
                raise ApiError(409, 'alreadyExists', "The resource 'projects/%s/zones/%s/"
                               "reservations/%s' already exists" % (project, zone, name))
            rid = self.next_id()
            t = now()
            iprops = dict(props)
            iprops['machineType'] = mt_name
            res = {'kind': 'compute#reservation', 'id': rid, 'creationTimestamp': self.ts(t),
                   'selfLink': LINK + 'projects/%s/zones/%s/reservations/%s' % (project, zone,
                                                                                name),
                   'zone': LINK + 'projects/%s/zones/%s' % (project, zone), 'name': name,
                   'specificReservation': {'instanceProperties': iprops, 'count': str(count),
                                           'inUseCount': '0', 'assuredCount': str(count)},
                   'specificReservationRequired': bool(obj.get('specificReservationRequired',
                                                               False)),
                   'status': 'CREATING',
                   'shareSettings': obj.get('shareSettings') or {'shareType': 'LOCAL'},
                   'satisfiesPzs': False}
            if obj.get('description'):
                res['description'] = obj['description']
            expire_in = None
            if obj.get('deleteAtTime'):
                try:
                    at = datetime.datetime.fromisoformat(obj['deleteAtTime'].replace('Z',
                                                                                     '+00:00'))
                    if at.tzinfo is None:
                        raise ValueError
                except ValueError:
                    raise invalid('resource.deleteAtTime', obj['deleteAtTime'],
                                  'Must be an RFC 3339 timestamp.')
                res['deleteAtTime'] = obj['deleteAtTime']
                expire_in = at.timestamp() - t
            if obj.get('deleteAfterDuration'):
                dur = obj['deleteAfterDuration']
                secs = int(dur.get('seconds') or 0) + int(dur.get('nanos') or 0) / 1e9
                res['deleteAfterDuration'] = dur
                res['deleteAtTime'] = self.ts(t + secs)
                expire_in = secs
            if expire_in is not None and expire_in <= 0:
                raise invalid('resource.deleteAtTime', res['deleteAtTime'],
                              'The delete time must be in the future.')
            for k in ('resourcePolicies', 'reservationSharingPolicy', 'deploymentType'):
                if k in obj:
                    res[k] = obj[k]
            self.s['reservations'][rid] = res
            self.s['res_meta'][rid] = {'project': project, 'zone': zone}
            opkey, op = self.new_operation(project, zone, 'insert',
                                           'projects/%s/zones/%s/reservations/%s'
                                           % (project, zone, name), rid, principal)
            if rkey:
                self.s['request_ids'][rkey] = opkey
            if not self._take_capacity(zone, count):
                self.schedule(self.cfg['failure_delay'], {
                    'kind': 'res_fail', 'id': rid, 'op': opkey,
                    'error': self._capacity_error(project, zone, mt_name), 'http_code': 503,
                    'http_msg': 'SERVICE UNAVAILABLE'})
            else:
                created = self.s['counters']['reservations_created']
                created[name] = created.get(name, 0) + 1
                self.schedule(self.cfg['reservation_create_delay'],
                              {'kind': 'res_ready', 'id': rid, 'op': opkey})
                if expire_in is not None:
                    self.schedule(expire_in, {'kind': 'res_expire', 'id': rid})
            self._dirty = True
            return copy.deepcopy(op)

    def delete_reservation(self, project, zone, name, query, principal):
        with self.lock:
            rkey, prev = self._dedupe(project, query)
            if prev:
                return prev
            rid = self.find_reservation(project, zone, name)
            if rid is None:
                raise not_found('projects/%s/zones/%s/reservations/%s' % (project, zone, name))
            res = self.s['reservations'][rid]
            opkey, op = self.new_operation(project, zone, 'delete',
                                           'projects/%s/zones/%s/reservations/%s'
                                           % (project, zone, res['name']), rid, principal)
            if rkey:
                self.s['request_ids'][rkey] = opkey
            res['status'] = 'DELETING'
            self.schedule(self.cfg['reservation_delete_delay'], {'kind': 'res_gone', 'id': rid,
                                                                 'op': opkey})
            self._dirty = True
            return copy.deepcopy(op)

    # ---- control API ---------------------------------------------------------------------
    def control(self, method, path, query, body, base):
        self.advance()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {'error': 'body is not JSON'}
        if not isinstance(data, dict):
            return 400, {'error': 'body must be a JSON object'}
        p = path[len('/_emulator/'):].strip('/')
        with self.lock:
            self._dirty = True
            if p == 'reset' and method == 'POST':
                self.reset(data.get('config'))
                return 200, {'ok': True}
            if p == 'config':
                if method == 'POST':
                    unknown = [k for k in data if k not in DEFAULT_CONFIG]
                    if unknown:
                        return 400, {'error': 'unknown config keys: %s' % ', '.join(unknown)}
                    self.s['config'].update(data)
                return 200, self.s['config']
            if p == 'catalogue':
                if method == 'POST':
                    for k in ('zones', 'machineTypes', 'zoneMachineTypes', 'images'):
                        if k in data:
                            self.s['catalogue'][k] = data[k]
                return 200, self.s['catalogue']
            if p == 'keys' and method == 'POST':
                email, pem = data.get('email'), data.get('public_key_pem')
                if not email or not pem:
                    return 400, {'error': 'email and public_key_pem are required'}
                try:
                    parse_public_key(pem)
                except (ValueError, IndexError) as exc:
                    return 400, {'error': 'cannot parse public key: %s' % exc}
                self.s['keys'].setdefault(email, []).append({'kid': data.get('key_id'),
                                                             'pem': pem})
                return 200, {'ok': True, 'email': email, 'keys': len(self.s['keys'][email])}
            if p == 'keys' and method == 'DELETE':
                self.s['keys'].pop(data.get('email') or qget(query, 'email'), None)
                return 200, {'ok': True}
            if p == 'service-accounts' and method == 'POST':
                return 200, self._make_service_account(data, base)
            if p == 'tokens' and method == 'POST':
                tok = data.get('token') or ('ya29.static' + secrets.token_urlsafe(32))
                exp = data.get('expires_in', None)
                entry = self.s['tokens'].get(tok) or {
                    'email': data.get('email', 'static-token@emulator'),
                    'scopes': data.get('scopes'), 'static': True}
                entry['expires'] = None if exp is None else now() + float(exp)
                if 'email' in data:
                    entry['email'] = data['email']
                if 'scopes' in data:
                    entry['scopes'] = data['scopes']
                self.s['tokens'][tok] = entry
                return 200, {'token': tok, 'expires': entry['expires']}
            if p == 'tokens/expire' and method == 'POST':
                # Expire now every token held by an account (tests: "the token ran out").
                email = data.get('email')
                if not email:
                    return 400, {'error': 'email is required'}
                hit = [e for e in self.s['tokens'].values() if e['email'] == email]
                for e in hit:
                    e['expires'] = now()
                return 200, {'expired': len(hit)}
            if p == 'tokens' and method == 'GET':
                return 200, {'tokens': [{'token': k[:12] + '...', 'email': v['email'],
                                         'expires': v['expires'], 'static': v.get('static')}
                                        for k, v in self.s['tokens'].items()]}
            if p == 'tokens' and method == 'DELETE':
                self.s['tokens'].pop(data.get('token') or qget(query, 'token'), None)
                return 200, {'ok': True}
            if p == 'capacity':
                if method == 'POST':
                    zones = data.get('zones') or [data.get('zone')]
                    if not zones or None in zones:
                        return 400, {'error': 'zone or zones is required'}
                    for z in zones:
                        if 'remaining' in data and data['remaining'] is None:
                            self.s['capacity'].pop(z, None)
                            continue
                        self.s['capacity'][z] = {
                            'remaining': int(data.get('remaining', 0)),
                            'code': data.get('code', 'ZONE_RESOURCE_POOL_EXHAUSTED')}
                return 200, self.s['capacity']
            if p == 'quota':
                if method == 'POST':
                    metric = data.get('metric', 'CPUS')
                    self.s['quotas'] = [q for q in self.s['quotas'] if not (
                        q['metric'] == metric and q.get('region') == data.get('region'))]
                    if data.get('limit') is not None:
                        mode = data.get('mode', 'sync')
                        if mode not in ('sync', 'operation'):
                            return 400, {'error': 'mode must be sync or operation'}
                        self.s['quotas'].append({'metric': metric, 'limit': float(data['limit']),
                                                 'region': data.get('region'), 'mode': mode})
                return 200, {'quotas': self.s['quotas']}
            if p in ('faults', 'throttle', 'fail', 'stall', 'drop'):
                if method == 'DELETE':
                    self.s['faults'] = []
                    return 200, {'ok': True}
                if method == 'GET':
                    return 200, {'faults': self.s['faults']}
                f = dict(data)
                if p != 'faults':
                    f['kind'] = {'fail': 'error'}.get(p, p)
                if f.get('kind') not in ('error', 'throttle', 'stall', 'drop'):
                    return 400, {'error': 'kind must be error, throttle, stall or drop'}
                if 'rate' in f and f['rate'] is not None:
                    f.setdefault('count', None)
                elif 'count' not in f:
                    f['count'] = 1
                if f['kind'] == 'throttle':
                    f.setdefault('status', 403)
                    if f['status'] not in (403, 429):
                        return 400, {'error': 'throttle status must be 403 or 429'}
                if f['kind'] == 'error':
                    f.setdefault('status', 503)
                if f['kind'] == 'stall':
                    f.setdefault('seconds', 5)
                if f.get('path_regex'):
                    try:
                        re.compile(f['path_regex'])
                    except re.error as exc:
                        return 400, {'error': 'bad path_regex: %s' % exc}
                f['id'] = len(self.s['faults']) + 1 + int(self.s['seq'])
                self.s['seq'] += 1
                self.s['faults'].append(f)
                return 200, f
            if p == 'instances' and method == 'POST':
                if isinstance(data.get('instances'), list):  # several at once
                    return 200, {'instances': [self._plant_instance(d)
                                               for d in data['instances']]}
                return 200, self._plant_instance(data)
            if p == 'instances' and method == 'GET':
                return 200, {'instances': self._state_instances()}
            if p == 'reservations' and method == 'GET':
                return 200, {'reservations': self._state_reservations()}
            if p == 'state' and method == 'GET':
                return 200, {'instances': self._state_instances(),
                             'reservations': self._state_reservations(),
                             'operations': len(self.s['operations']),
                             'capacity': self.s['capacity'], 'quotas': self.s['quotas'],
                             'faults': self.s['faults'], 'counters': self.s['counters'],
                             'config': self.s['config']}
            if p == 'counters' and method == 'GET':
                return 200, self.s['counters']
            if p == 'requests':
                if method == 'DELETE':
                    self.log = []
                    return 200, {'ok': True}
                since = int(qget(query, 'since', 0) or 0)
                prefix = qget(query, 'path_prefix', '')
                return 200, {'requests': [e for e in self.log if e['seq'] > since and
                                          e['path'].startswith(prefix)]}
        return 404, {'error': 'unknown control call %s %s' % (method, path)}

    def _state_instances(self):
        out = []
        for iid, m in self.s['inst_meta'].items():
            inst = self.s['instances'][iid]
            nat = [ac.get('natIP') for nic in inst.get('networkInterfaces', [])
                   for ac in nic.get('accessConfigs', []) if ac.get('natIP')]
            res = m.get('reservation')
            out.append({'id': iid, 'project': m['project'], 'zone': m['zone'],
                        'name': inst['name'], 'status': inst['status'],
                        'labels': inst.get('labels', {}),
                        'machineType': last_segment(inst['machineType']),
                        'creationTimestamp': inst['creationTimestamp'],
                        'networkIP': inst['networkInterfaces'][0].get('networkIP')
                        if inst.get('networkInterfaces') else None,
                        'natIP': nat[0] if nat else None,
                        'reservation': self.s['reservations'][res]['name']
                        if res and res in self.s['reservations'] else None,
                        'metadata': {it['key']: it.get('value') for it in
                                     inst.get('metadata', {}).get('items', [])},
                        'scheduling': inst.get('scheduling', {})})
        return sorted(out, key=lambda x: (x['project'], x['zone'], x['name']))

    def _state_reservations(self):
        out = []
        for rid, m in self.s['res_meta'].items():
            r = self.s['reservations'][rid]
            sr = r['specificReservation']
            out.append({'id': rid, 'project': m['project'], 'zone': m['zone'], 'name': r['name'],
                        'status': r['status'], 'count': int(sr['count']),
                        'inUseCount': int(sr['inUseCount']),
                        'machineType': sr['instanceProperties'].get('machineType'),
                        'specificReservationRequired': r.get('specificReservationRequired'),
                        'deleteAtTime': r.get('deleteAtTime')})
        return sorted(out, key=lambda x: (x['project'], x['zone'], x['name']))

    def _plant_instance(self, d):
        project, zone, name = d.get('project', 'emulator-project'), d.get('zone'), d.get('name')
        if not zone or not name:
            return {'error': 'zone and name are required'}
        if zone not in self.zones():
            self.s['catalogue']['zones'].append(zone)
        if self.find_instance(project, zone, name) is not None:
            return {'error': 'instance already exists'}
        iid = d.get('id') or self.next_id()
        mt = d.get('machineType', 'n1-standard-1')
        status = d.get('status', 'RUNNING')
        nic = {'kind': 'compute#networkInterface',
               'network': LINK + 'projects/%s/global/networks/default' % project,
               'subnetwork': LINK + 'projects/%s/regions/%s/subnetworks/default'
                             % (project, region_of(zone)),
               'networkIP': d.get('networkIP') or self._alloc_internal_ip(), 'name': 'nic0',
               'fingerprint': fingerprint({'id': iid}), 'stackType': 'IPV4_ONLY'}
        if d.get('external', True):
            ac = {'kind': 'compute#accessConfig', 'type': 'ONE_TO_ONE_NAT',
                  'name': 'External NAT', 'networkTier': 'PREMIUM'}
            if status == 'RUNNING':
                ac['natIP'] = d.get('natIP') or self._alloc_nat_ip()
            nic['accessConfigs'] = [ac]
        labels = d.get('labels') or {}
        items = [{'key': k, 'value': v} for k, v in (d.get('metadata') or {}).items()]
        inst = {'kind': 'compute#instance', 'id': iid,
                'creationTimestamp': d.get('creationTimestamp') or self.ts(),
                'name': name, 'tags': {'fingerprint': EMPTY_FINGERPRINT},
                'machineType': LINK + 'projects/%s/zones/%s/machineTypes/%s' % (project, zone, mt),
                'status': status, 'zone': LINK + 'projects/%s/zones/%s' % (project, zone),
                'canIpForward': False, 'networkInterfaces': [nic],
                'disks': [{'kind': 'compute#attachedDisk', 'type': 'PERSISTENT',
                           'mode': 'READ_WRITE', 'source': LINK + 'projects/%s/zones/%s/disks/%s'
                           % (project, zone, name), 'deviceName': 'persistent-disk-0',
                           'index': 0, 'boot': True, 'autoDelete': True, 'interface': 'SCSI',
                           'diskSizeGb': '10', 'architecture': 'X86_64'}],
                'metadata': {'kind': 'compute#metadata', 'fingerprint': fingerprint(items)},
                'selfLink': LINK + 'projects/%s/zones/%s/instances/%s' % (project, zone, name),
                'scheduling': d.get('scheduling') or {'onHostMaintenance': 'MIGRATE',
                                                      'automaticRestart': True,
                                                      'preemptible': False,
                                                      'provisioningModel': 'STANDARD'},
                'cpuPlatform': 'Intel Broadwell', 'labelFingerprint': fingerprint(labels),
                'startRestricted': False, 'deletionProtection': False,
                'reservationAffinity': {'consumeReservationType': 'ANY_RESERVATION'},
                'fingerprint': fingerprint({'i': iid}), 'satisfiesPzi': False}
        if items:
            inst['metadata']['items'] = items
        if labels:
            inst['labels'] = dict(labels)
        if status == 'RUNNING':
            inst['lastStartTimestamp'] = inst['creationTimestamp']
        self.s['instances'][iid] = inst
        self.s['inst_meta'][iid] = {'project': project, 'zone': zone, 'reservation': None}
        return inst

    def _make_service_account(self, data, base):
        email = data.get('email') or 'emulator-sa@emulator-project.iam.gserviceaccount.com'
        with tempfile.TemporaryDirectory() as td:
            key = os.path.join(td, 'k.pem')
            subprocess.run(['openssl', 'genpkey', '-algorithm', 'RSA', '-pkeyopt',
                            'rsa_keygen_bits:2048', '-out', key], check=True,
                           capture_output=True)
            pub = subprocess.run(['openssl', 'pkey', '-in', key, '-pubout'], check=True,
                                 capture_output=True, text=True).stdout
            with open(key) as f:
                priv = f.read()
        kid = secrets.token_hex(20)
        self.s['keys'].setdefault(email, []).append({'kid': kid, 'pem': pub})
        host_base = base.split('/compute/v1/')[0]
        return {'type': 'service_account',
                'project_id': data.get('project_id', email.split('@')[-1].split('.')[0]),
                'private_key_id': kid, 'private_key': priv, 'client_email': email,
                'client_id': str(random.randrange(10 ** 20, 10 ** 21)),
                'auth_uri': 'https://accounts.google.com/o/oauth2/auth',
                'token_uri': host_base + '/token',
                'auth_provider_x509_cert_url': 'https://www.googleapis.com/oauth2/v1/certs',
                'client_x509_cert_url': 'https://www.googleapis.com/robot/v1/metadata/x509/'
                                        + urllib.parse.quote(email),
                'universe_domain': 'googleapis.com'}

    _tl = threading.local()


# --------------------------------------------------------------------------------------------
# HTTP layer


def render(obj, base, pretty=True):
    data = json.dumps(obj, indent=2 if pretty else None,
                      separators=(',', ': ') if pretty else (',', ':'))
    return data.replace('"' + LINK, '"' + base).encode()


GOOGLE_5XX = {
    500: ('backendError', 'Internal Error'),
    502: ('backendError', 'Bad Gateway'),
    503: ('backendError', 'The service is currently unavailable.'),
    504: ('backendError', 'Deadline exceeded'),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'ESF'
    sys_version = ''

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, fmt, *args):
        if self.server.emu.verbose:
            sys.stderr.write('%s - %s\n' % (self.address_string(), fmt % args))

    def do_GET(self):
        self._handle('GET')

    def do_POST(self):
        self._handle('POST')

    def do_DELETE(self):
        self._handle('DELETE')

    def do_PUT(self):
        self._handle('PUT')

    def do_PATCH(self):
        self._handle('PATCH')

    def _read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b''.join(chunks)
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def _base(self):
        host = self.headers.get('Host') or '%s:%d' % self.server.server_address[:2]
        return '%s://%s' % (self.server.emu.scheme, host)

    def _send(self, status, data, ctype='application/json; charset=UTF-8', headers=None):
        # The log entry is complete before the first byte leaves, so a client that reads the
        # request log right after its answer always sees its own request finished.
        self._status = status
        self._finish_entry()
        self.send_response(status)
        if data is not None or status != 204:
            self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data or b'')))
        self.send_header('Vary', 'Origin, X-Origin, Referer')
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)
        self._status = status

    def _drop(self, reset=False):
        self.close_connection = True
        self._status = 'dropped'
        self._finish_entry()
        try:
            if reset:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack('ii', 1, 0))
            else:
                self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _handle(self, method):
        emu = self.server.emu
        self._status = None
        t0 = now()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self._read_body()
        entry = emu.log_request(method, path, url.query, self.client_address[0],
                                {'user_agent': self.headers.get('User-Agent', '')})
        self._entry, self._t0 = entry, t0
        Emulator._tl.route = None
        base = self._base()
        cbase = base + '/compute/v1/'
        Emulator._tl.base = cbase
        try:
            if path.startswith('/_emulator/'):
                status, obj = emu.control(method, path, query, body, cbase)
                self._send(status, render(obj, cbase))
                return
            faults = emu.take_faults(method, path, 'before')
            if faults:
                entry['fault'] = [f['kind'] for f in faults]
            for f in faults:
                if f['kind'] == 'stall':
                    time.sleep(float(f.get('seconds', 5)))
            for f in faults:
                if f['kind'] == 'drop':
                    self._drop(bool(f.get('reset')))
                    return
            for f in faults:
                if f['kind'] == 'throttle':
                    self._send_error(self._throttle_error(f))
                    return
                if f['kind'] == 'error':
                    code = int(f.get('status', 503))
                    reason, msg = GOOGLE_5XX.get(code, ('backendError', 'Internal Error'))
                    self._send_error(ApiError(code, reason, f.get('message', msg)))
                    return
            status, data, ctype, hdrs = self._route(method, path, query, body, base, cbase)
            after = emu.take_faults(method, path, 'after')
            if after:
                entry['fault'] = entry.get('fault', []) + [f['kind'] + '-after' for f in after]
            for f in after:
                if f['kind'] == 'stall':
                    time.sleep(float(f.get('seconds', 5)))
            for f in after:
                if f['kind'] == 'drop':
                    self._drop(bool(f.get('reset')))
                    return
            self._send(status, data, ctype, hdrs)
        except ApiError as exc:
            try:
                self._send_error(exc)
            except (BrokenPipeError, ConnectionResetError):
                self._status = 'client-gone'
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self._status = 'client-gone'   # e.g. the client timed out during a stall
            self.close_connection = True
        except Exception as exc:  # an emulator bug: report it the way Google reports a 500
            import traceback
            traceback.print_exc()
            self._send_error(ApiError(500, 'backendError', 'Internal Error (emulator: %r)' % exc))
        finally:
            self._finish_entry()

    def _finish_entry(self):
        entry, path = self._entry, self._entry['path']
        with self.server.emu.lock:
            entry['status'] = self._status
            entry['duration_ms'] = round((now() - self._t0) * 1000, 2)
            if path.startswith('/compute/'):
                entry['route'] = getattr(Emulator._tl, 'route', None)
            elif path in ('/token', '/oauth2/v4/token'):
                entry['route'] = 'oauth2.token'

    def _send_error(self, exc):
        self._send(exc.code, json.dumps(exc.body(), indent=2).encode(), headers=exc.headers)

    def _throttle_error(self, f):
        if int(f.get('status', 403)) == 429:
            msg = f.get('message') or (
                "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute' of "
                "service 'compute.googleapis.com' for consumer 'project_number:%s'."
                % self.server.emu.cfg['project_number'])
            hdrs = {'Retry-After': str(f['retry_after'])} if f.get('retry_after') else {}
            return ApiError(429, 'rateLimitExceeded', msg, status='RESOURCE_EXHAUSTED',
                            headers=hdrs, details=[{
                                '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
                                'reason': 'RATE_LIMIT_EXCEEDED',
                                'domain': 'googleapis.com',
                                'metadata': {'service': 'compute.googleapis.com',
                                             'quota_metric': 'compute.googleapis.com/'
                                                             'default_requests',
                                             'quota_limit': 'defaultPerMinutePerProject',
                                             'consumer': 'projects/%s' %
                                                         self.server.emu.cfg['project_number']}}])
        msg = f.get('message') or 'Rate Limit Exceeded'
        hdrs = {'Retry-After': str(f['retry_after'])} if f.get('retry_after') else {}
        return ApiError(403, 'rateLimitExceeded', msg, domain='usageLimits', headers=hdrs)

    def _route(self, method, path, query, body, base, cbase):
        emu = self.server.emu
        json_ct = 'application/json; charset=UTF-8'
        if path in ('/token', '/oauth2/v4/token') and method == 'POST':
            form = urllib.parse.parse_qs(body.decode('utf-8', 'replace'), keep_blank_values=True)
            status, obj = emu.token_endpoint(form, base + path)
            return status, json.dumps(obj).encode(), json_ct, {'Cache-Control': 'no-store'}
        if path.startswith('/computeMetadata/v1/') or path in ('/', '/computeMetadata/v1'):
            return self._metadata(method, path, query)
        if path.startswith('/compute/v1/'):
            principal = emu.check_bearer(self.headers)
            status, obj = emu.compute(method, path[len('/compute/v1/'):], query, body,
                                      principal, cbase)
            pretty = qget(query, 'prettyPrint', 'true').lower() not in ('false', '0')
            return status, (render(obj, cbase, pretty) if obj is not None else b''), json_ct, {}
        if path in ('/batch/compute/v1', '/batch') and method == 'POST':
            return self._batch(body, cbase)
        raise ApiError(404, 'notFound', 'The requested URL %s was not found on this server.'
                       % path)

    def _metadata(self, method, path, query):
        emu = self.server.emu
        mh = {'Metadata-Flavor': 'Google'}
        if self.headers.get('Metadata-Flavor') != 'Google':
            return 403, b'Missing Metadata-Flavor:Google header.', 'text/html; charset=UTF-8', mh
        if path == '/':
            return 200, b'computeMetadata/\n', 'application/text', mh
        sub = path[len('/computeMetadata/v1/'):].strip('/')
        if sub == 'instance/service-accounts/default/token' and method == 'GET':
            scopes = qget(query, 'scopes')
            scopes = scopes.split(',') if scopes else list(COMPUTE_SCOPES[:1])
            obj = emu.issue_token(emu.cfg['metadata_email'], scopes)
            return 200, json.dumps(obj).encode(), 'application/json', mh
        if sub == 'instance/service-accounts/default/email':
            return 200, emu.cfg['metadata_email'].encode(), 'application/text', mh
        if sub == 'project/project-id':
            return 200, emu.cfg['metadata_project'].encode(), 'application/text', mh
        if sub == 'project/numeric-project-id':
            return 200, emu.cfg['project_number'].encode(), 'application/text', mh
        if sub == 'instance/zone':
            return 200, ('projects/%s/zones/%s' % (emu.cfg['project_number'],
                                                   emu.zones()[0])).encode(), \
                'application/text', mh
        return 404, b'Not Found', 'text/html; charset=UTF-8', mh

    def _batch(self, body, cbase):
        """Google's batch endpoint: multipart/mixed of application/http parts."""
        emu = self.server.emu
        ctype = self.headers.get('Content-Type', '')
        m = re.search(r'boundary="?([^";]+)"?', ctype)
        if not ctype.startswith('multipart/mixed') or not m:
            raise ApiError(400, 'badRequest', 'Batch requests must be multipart/mixed.')
        boundary = m.group(1).encode()
        parts = body.split(b'--' + boundary)
        responses = []
        outer_headers = self.headers
        for part in parts[1:]:
            if part.startswith(b'--'):
                break
            part = part.lstrip(b'\r\n')
            head, _, inner = part.partition(b'\r\n\r\n')
            if not _:
                head, _, inner = part.partition(b'\n\n')
            cid = re.search(rb'(?im)^content-id:\s*<?([^>\r\n]*)>?', head)
            cid = cid.group(1).decode() if cid else ''
            inner = inner.rstrip(b'\r\n')
            rhead, _, rbody = inner.partition(b'\r\n\r\n')
            if not _:
                rhead, _, rbody = inner.partition(b'\n\n')
            lines = rhead.decode('utf-8', 'replace').splitlines()
            req_method, req_url = lines[0].split()[:2]
            hdrs = {}
            for ln in lines[1:]:
                if ':' in ln:
                    k, v = ln.split(':', 1)
                    hdrs[k.strip().lower()] = v.strip()
            u = urllib.parse.urlsplit(req_url)
            q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
            sub_entry = emu.log_request(req_method, u.path, u.query, self.client_address[0],
                                        {'batch': True})
            try:
                Emulator._tl.route = None
                if not u.path.startswith('/compute/v1/'):
                    raise ApiError(404, 'notFound', 'Not found: %s' % u.path)

                class H(dict):
                    def get(self, k, d=None):
                        return dict.get(self, k.lower(), d)
                auth = hdrs.get('authorization') or outer_headers.get('Authorization')
                principal = emu.check_bearer(H({'authorization': auth} if auth else {}))
                status, obj = emu.compute(req_method, u.path[len('/compute/v1/'):], q, rbody,
                                          principal, cbase)
                rb = render(obj, cbase) if obj is not None else b''
                extra = ''
            except ApiError as exc:
                status, rb = exc.code, json.dumps(exc.body(), indent=2).encode()
                extra = ''.join('%s: %s\r\n' % kv for kv in exc.headers.items())
            with emu.lock:
                sub_entry['status'] = status
                sub_entry['route'] = getattr(Emulator._tl, 'route', None)
            reason = http.server.BaseHTTPRequestHandler.responses.get(status, ('',))[0]
            responses.append(
                ('Content-Type: application/http\r\nContent-ID: <response-%s>\r\n\r\n'
                 'HTTP/1.1 %d %s\r\nContent-Type: application/json; charset=UTF-8\r\n%s'
                 'Content-Length: %d\r\n\r\n' % (cid, status, reason, extra, len(rb))).encode()
                + rb)
        out_boundary = 'batch_' + secrets.token_urlsafe(12)
        data = b''.join(b'--' + out_boundary.encode() + b'\r\n' + r + b'\r\n'
                        for r in responses) + b'--' + out_boundary.encode() + b'--\r\n'
        return 200, data, 'multipart/mixed; boundary=%s' % out_boundary, {}


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout)):
            return  # clients hanging up or failing the TLS handshake are routine here
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--port-file')
    ap.add_argument('--tls-cert')
    ap.add_argument('--tls-key')
    ap.add_argument('--state-file')
    ap.add_argument('--config', help='JSON object merged into the default config')
    ap.add_argument('--verbose', action='store_true')
    ap.add_argument('--parent-pid', type=int,
                    help='exit when this process (normally the test that started us) is gone')
    args = ap.parse_args(argv)
    cfg = json.loads(args.config) if args.config else None
    emu = Emulator(state_file=args.state_file, config=cfg, verbose=args.verbose)
    srv = Server((args.host, args.port), Handler)
    srv.emu = emu
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        # handshake lazily, in the handler thread, so a bad client cannot block accept()
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True,
                                     do_handshake_on_connect=False)
        emu.scheme = 'https'
    port = srv.server_address[1]

    stop = threading.Event()

    def parent_gone():
        try:
            os.kill(args.parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
        return False

    def ticker():
        last_check = 0.0
        while not stop.is_set():
            if args.parent_pid and now() - last_check > 0.25:
                last_check = now()
                if parent_gone():
                    on_term(None, None)
                    return
            emu.advance()
            if emu.state_file:
                try:
                    emu.save_state()
                except OSError as exc:
                    sys.stderr.write('gce_emulator: cannot save state: %s\n' % exc)
            stop.wait(0.02)

    def on_term(signum, frame):
        threading.Thread(target=srv.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=ticker, daemon=True).start()
    if args.port_file:
        tmp = args.port_file + '.tmp'
        with open(tmp, 'w') as f:
            f.write('%d\n' % port)
        os.replace(tmp, args.port_file)
    sys.stderr.write('gce_emulator listening on %s://%s:%d\n' % (emu.scheme, args.host, port))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        emu._dirty = True
        emu.save_state()
        srv.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
