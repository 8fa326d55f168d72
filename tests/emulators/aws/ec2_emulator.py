#!/usr/bin/env python3
"""An emulator of the parts of Amazon EC2's Query API (Version 2016-11-15) that cloudbrain uses,
with an IMDSv2 endpoint and a JSON control API under /_emulator/ for tests. See README.md.

Standard library only. Every EC2 request must be signed with AWS Signature Version 4 by
credentials registered with the emulator (or issued by its IMDS); the signature is checked the
way AWS checks it. Answers are EC2's XML, errors EC2's <Response><Errors> document.
"""
import argparse
import base64
import binascii
import copy
import datetime
import email.utils
import hashlib
import heapq
import hmac
import http.server
import json
import os
import posixpath
import random
import re
import secrets
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
NAMESPACE = 'http://ec2.amazonaws.com/doc/2016-11-15/'
API_VERSION = '2016-11-15'

DEFAULT_CONFIG = {
    'region': 'eu-west-1',
    'account_id': '123456789012',
    # Registered at every reset; tests register more with POST /_emulator/credentials.
    'access_key_id': 'AKIAEMULATOREXAMPLE1',
    'secret_access_key': 'emulator/secret/KEY/EXAMPLEKEYEXAMPLEKEY',
    'pending_delay': 0.3,            # pending -> running
    'stopping_delay': 0.3,           # shutting-down -> terminated
    'reservation_create_delay': 0.3,  # capacity reservation pending -> active
    # A new instance or reservation is invisible to Describe*/Terminate*/Cancel* this long.
    'consistency_delay': 0.0,
    'terminated_visible': 60.0,      # a terminated instance is still described this long
    'cancelled_visible': 60.0,       # a cancelled or expired reservation, the same
    'max_skew': 300.0,               # seconds a request's X-Amz-Date may be off
    'clock_offset': 0.0,             # the emulator's clock, relative to this host's
    'max_page_size': 1000,           # DescribeInstances/... pages are at most this long
    'verify_signatures': True,
    'imds_credentials_lifetime': 3600.0,
    'imds_role': 'cloudbrain-role',
    'request_log_limit': 100000,
}

DEFAULT_CATALOGUE = {
    'zones': ['eu-west-1a', 'eu-west-1b', 'eu-west-1c'],
    'zoneIds': {'eu-west-1a': 'euw1-az1', 'eu-west-1b': 'euw1-az2', 'eu-west-1c': 'euw1-az3'},
    'instanceTypes': {'t3.micro': 2, 't3.small': 2, 'm5.large': 2, 'm5.xlarge': 4,
                      'm5.2xlarge': 8, 'c5.large': 2, 'c5.4xlarge': 16, 'p4d.24xlarge': 96},
    # zone -> the instance types offered there; a zone not listed offers every type.
    'zoneInstanceTypes': {'eu-west-1c': ['t3.micro', 't3.small', 'm5.large', 'm5.xlarge',
                                         'm5.2xlarge', 'c5.large', 'c5.4xlarge']},
    'images': [
        {'imageId': 'ami-0c1bea58988a98915', 'name': 'cloudbrain-ci-2024-01',
         'ownerId': 'self', 'state': 'available', 'creationDate': '2024-01-10T10:00:00.000Z'},
        {'imageId': 'ami-0d2cfb69a99b9a026', 'name': 'cloudbrain-ci-2024-02',
         'ownerId': 'self', 'state': 'available', 'creationDate': '2024-02-10T10:00:00.000Z'},
        {'imageId': 'ami-0e3d0c7aaaac0b137', 'name': 'cloudbrain-ci-2024-03',
         'ownerId': 'self', 'state': 'pending', 'creationDate': '2024-03-10T10:00:00.000Z'},
        {'imageId': 'ami-0694d931cee176e7d', 'name':
         'ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-20240411',
         'ownerId': '099720109477', 'state': 'available',
         'creationDate': '2024-04-11T09:00:00.000Z'},
        {'imageId': 'ami-0f0c2b4c3d5e6f708', 'name': 'al2023-ami-2023.4.20240416.0-kernel-6.1-x86_64',
         'ownerId': '137112412989', 'ownerAlias': 'amazon', 'state': 'available',
         'creationDate': '2024-04-16T20:00:00.000Z'},
    ],
    'vpcId': 'vpc-0e1f2a3b4c5d6e7f8',
    # subnet id -> {zone, public (MapPublicIpOnLaunch)}
    'subnets': {'subnet-0aaa': {'zone': 'eu-west-1a', 'public': False},
                'subnet-0bbb': {'zone': 'eu-west-1b', 'public': False},
                'subnet-0ccc': {'zone': 'eu-west-1c', 'public': True}},
    'securityGroups': ['sg-0123', 'sg-0456', 'sg-0e1f2a3b4c5d6e7f8'],
}

STATE_CODES = {'pending': 0, 'running': 16, 'shutting-down': 32, 'terminated': 48,
               'stopping': 64, 'stopped': 80}
INSTANCE_TAG_TYPES = ('instance', 'volume', 'network-interface', 'spot-instances-request',
                      'elastic-gpu')

with open(os.path.join(HERE, 'ec2_schema.json')) as _f:
    SCHEMA = json.load(_f)['operations']


def now():
    return time.time()


class Ec2Error(Exception):
    """An EC2 error answer: <Response><Errors><Error><Code/><Message/>..."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def missing(name):
    return Ec2Error(400, 'MissingParameter',
                    'The request must contain the parameter %s' % name)


def invalid_value(message):
    return Ec2Error(400, 'InvalidParameterValue', message)


# ---- XML ---------------------------------------------------------------------------------
def xml_escape(s):
    return (str(s).replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')
            .replace('"', '&quot;'))


def render_xml(root, children, request_id):
    """children: a list of (name, value) where value is a string, a bool, an int, None (left
    out), or a list of (name, value) again (a nested element)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<%s xmlns="%s">\n' % (root, NAMESPACE),
           '    <requestId>%s</requestId>\n' % request_id]

    def emit(name, value, depth):
        pad = '    ' * depth
        if value is None:
            return
        if isinstance(value, list):
            if not value:
                out.append('%s<%s/>\n' % (pad, name))
                return
            out.append('%s<%s>\n' % (pad, name))
            for n, v in value:
                emit(n, v, depth + 1)
            out.append('%s</%s>\n' % (pad, name))
            return
        if isinstance(value, bool):
            value = 'true' if value else 'false'
        out.append('%s<%s>%s</%s>\n' % (pad, name, xml_escape(value), name))

    for n, v in children:
        emit(n, v, 1)
    out.append('</%s>\n' % root)
    return ''.join(out).encode()


def render_error(err, request_id):
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
            '<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>'
            % (xml_escape(err.code), xml_escape(err.message), request_id)).encode()


def iso(t):
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (d.microsecond // 1000)


def parse_iso(s):
    s = s.strip()
    m = re.fullmatch(r'(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:?\d\d)?',
                     s)
    if not m:
        raise ValueError(s)
    y, mo, d, h, mi, se = (int(x) for x in m.groups()[:6])
    frac = float(m.group(7)) if m.group(7) else 0.0
    tz = datetime.timezone.utc
    if m.group(8) and m.group(8) not in ('Z', 'z'):
        off = m.group(8).replace(':', '')
        minutes = int(off[1:3]) * 60 + int(off[3:5])
        tz = datetime.timezone(datetime.timedelta(minutes=minutes if off[0] == '+' else -minutes))
    return datetime.datetime(y, mo, d, h, mi, se, tzinfo=tz).timestamp() + frac


# ---- SigV4, checked ----------------------------------------------------------------------
def _hmac(key, msg):
    return hmac.new(key, msg.encode('utf-8'), hashlib.sha256).digest()


def sigv4_signing_key(secret, date, region, service):
    k = _hmac(('AWS4' + secret).encode('utf-8'), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, 'aws4_request')


def canonical_uri(path):
    if not path:
        return '/'
    kept = []
    for seg in path.split('/'):
        if seg == '..':
            if kept:
                kept.pop()
        elif seg and seg != '.':
            kept.append(seg)
    out = ('/' if path.startswith('/') else '') + '/'.join(kept)
    if path.endswith('/') and kept:
        out += '/'
    return urllib.parse.quote(out, safe='/~')


def canonical_query(raw):
    pairs = []
    for part in raw.split('&'):
        if not part:
            continue
        k, _, v = part.partition('=')
        pairs.append((urllib.parse.quote(urllib.parse.unquote(k), safe='-_.~'),
                      urllib.parse.quote(urllib.parse.unquote(v), safe='-_.~')))
    return '&'.join('%s=%s' % kv for kv in sorted(pairs))


AUTH_RE = re.compile(r'^AWS4-HMAC-SHA256\s+(.*)$')


def parse_authorization(value):
    m = AUTH_RE.match(value or '')
    if not m:
        return None
    parts = {}
    for item in m.group(1).split(','):
        k, _, v = item.strip().partition('=')
        parts[k] = v
    if not all(k in parts for k in ('Credential', 'SignedHeaders', 'Signature')):
        return None
    return parts


# ---- parameters --------------------------------------------------------------------------
def pattern_of(name):
    return re.sub(r'(?<=\.)\d+(?=\.|$)', 'N', name)


def validate_params(action, params):
    """Unknown parameters, wrong types and enums are refused the way EC2 refuses them."""
    schema = SCHEMA[action]
    for name, value in params.items():
        if name in ('Action', 'Version'):
            continue
        spec = schema['params'].get(pattern_of(name))
        if spec is None:
            raise Ec2Error(400, 'UnknownParameter', 'The parameter %s is not recognized' % name)
        kind = spec['type']
        if kind in ('integer', 'long'):
            if not re.fullmatch(r'-?\d+', value):
                raise invalid_value('Invalid value \'%s\' for %s' % (value, name))
        elif kind == 'boolean':
            if value.lower() not in ('true', 'false'):
                raise invalid_value('Invalid value \'%s\' for %s' % (value, name))
        elif kind == 'timestamp':
            try:
                parse_iso(value)
            except ValueError:
                raise invalid_value('Invalid value \'%s\' for %s: not a timestamp'
                                    % (value, name))
        if spec.get('enum') and value not in spec['enum']:
            raise invalid_value('Invalid value \'%s\' for %s. Valid values: %s'
                                % (value, name, ', '.join(spec['enum'])))
    for name in schema['required']:
        if name not in params and not any(p.startswith(name + '.') for p in params):
            raise missing(name)


def indexed(params, prefix):
    """[value of PREFIX.1, PREFIX.2, ...] in index order (PREFIX.N without sub-keys)."""
    found = {}
    rx = re.compile(re.escape(prefix) + r'\.(\d+)$')
    for k, v in params.items():
        m = rx.match(k)
        if m:
            found[int(m.group(1))] = v
    return [found[i] for i in sorted(found)]


def indexed_groups(params, prefix):
    """{N: {rest: value}} for PREFIX.N.rest parameters, in index order."""
    groups = {}
    rx = re.compile(re.escape(prefix) + r'\.(\d+)\.(.+)$')
    for k, v in params.items():
        m = rx.match(k)
        if m:
            groups.setdefault(int(m.group(1)), {})[m.group(2)] = v
    return [groups[i] for i in sorted(groups)]


def parse_filters(params):
    out = []
    for g in indexed_groups(params, 'Filter'):
        name = g.get('Name')
        if not name:
            raise invalid_value('A filter needs a Name')
        values = [g[k] for k in sorted((k for k in g if re.fullmatch(r'Value\.\d+', k)),
                                       key=lambda k: int(k.split('.')[1]))]
        out.append((name, values))
    return out


def wildcard(value):
    """EC2's filter wildcards: * any run of characters, ? one character."""
    rx = ''.join('.*' if c == '*' else '.' if c == '?' else re.escape(c) for c in value)
    return re.compile('(?s)' + rx + r'\Z')


def matches(candidates, values):
    """EC2 filters: any value matches (with * and ? wildcards) any of the candidates."""
    for v in values:
        rx = wildcard(v)
        if any(c is not None and rx.match(str(c)) for c in candidates):
            return True
    return False


def parse_tags(groups, where):
    tags = []
    keys = set()
    for g in groups:
        key = g.get('Key')
        value = g.get('Value', '')
        if key is None:
            raise invalid_value('A tag in %s has no key' % where)
        if not 1 <= len(key) <= 128:
            raise invalid_value('Tag key exceeds the maximum length of 128 characters')
        if len(value) > 256:
            raise invalid_value('Tag value exceeds the maximum length of 256 characters')
        if key.lower().startswith('aws:'):
            raise invalid_value('Tag keys starting with \'aws:\' are reserved for internal use')
        if key in keys:
            raise invalid_value('Duplicate tag key \'%s\' specified.' % key)
        keys.add(key)
        tags.append([key, value])
    if len(tags) > 50:
        raise Ec2Error(400, 'TagLimitExceeded', 'The maximum number of tags (50) is exceeded')
    return tags


def tag_set(tags):
    return [('item', [('key', k), ('value', v)]) for k, v in tags]


def tag_value(tags, key):
    for k, v in tags:
        if k == key:
            return v
    return None


def new_id(prefix):
    return prefix + secrets.token_hex(9)[:17]


# ---- the emulator ------------------------------------------------------------------------
class Emulator:
    _tl = threading.local()

    def __init__(self, state_file=None, config=None, verbose=False):
        self.lock = threading.RLock()
        self.state_file = state_file
        self.verbose = verbose
        self.scheme = 'http'
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
                'credentials': {},   # access key id -> {secret, token, expires, source}
                'instances': {},     # id -> instance
                'reservations': {},  # capacity reservation id -> reservation
                'tokens': {},        # 'run:'|'ccr:' + ClientToken -> {id, fingerprint}
                'capacity': {},      # zone -> {'remaining': int, 'code': str}
                'quotas': {},        # 'vcpus'|'instances' -> limit
                'faults': [],
                'events': [],        # heap of [t, seq, event]
                'imds_tokens': {},   # token -> expires
                'imds_credentials': None,
                'counters': {'run_calls': {}, 'instances_created': {}, 'terminate_calls': {},
                             'reservation_create_calls': {}, 'reservations_created': {},
                             'cancel_calls': {}, 'methods': {}, 'requests_total': 0,
                             'faults_injected': 0, 'auth_failures': 0, 'dedup_hits': 0,
                             'consistency_not_found': 0, 'imds_tokens_issued': 0,
                             'imds_credentials_issued': 0},
                'ips': {'next_private': 10, 'public_free': [], 'next_public': 1},
                'seq': 0,
                'started': now(),
            }
            self._register(cfg['access_key_id'], cfg['secret_access_key'], None, None, 'static')
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

    def clock(self):
        """The emulator's idea of the time (its clock may be set off on purpose)."""
        return now() + float(self.cfg['clock_offset'])

    def _register(self, akid, secret, token, expires, source):
        self.s['credentials'][akid] = {'secret': secret, 'token': token, 'expires': expires,
                                       'source': source}

    def next_seq(self):
        self.s['seq'] += 1
        return self.s['seq']

    # ---- scheduled transitions -----------------------------------------------------------
    def schedule(self, delay, event):
        heapq.heappush(self.s['events'], [now() + max(0.0, delay), self.next_seq(), event])

    def advance(self):
        with self.lock:
            t = now()
            while self.s['events'] and self.s['events'][0][0] <= t:
                _, _, ev = heapq.heappop(self.s['events'])
                self._apply_event(ev, t)
                self._dirty = True

    def _apply_event(self, ev, t):
        kind = ev['kind']
        inst = self.s['instances'].get(ev.get('id'))
        res = self.s['reservations'].get(ev.get('id'))
        if kind == 'running' and inst and inst['state'] == 'pending':
            inst['state'] = 'running'
            if inst['wants_public']:
                inst['public_ip'] = self._alloc_public_ip()
        elif kind == 'terminated' and inst and inst['state'] == 'shutting-down':
            inst['state'] = 'terminated'
            self._release_public_ip(inst)
            self.schedule(self.cfg['terminated_visible'], {'kind': 'forget', 'id': inst['id']})
        elif kind == 'forget' and inst and inst['state'] == 'terminated':
            del self.s['instances'][inst['id']]
        elif kind == 'active' and res and res['state'] == 'pending':
            res['state'] = 'active'
        elif kind == 'expire' and res and res['state'] in ('pending', 'active'):
            res['state'] = 'expired'
            res['ended'] = t
            self.schedule(self.cfg['cancelled_visible'], {'kind': 'forget_reservation',
                                                          'id': res['id']})
        elif kind == 'forget_reservation' and res and res['state'] in ('cancelled', 'expired'):
            del self.s['reservations'][res['id']]

    # ---- addresses -----------------------------------------------------------------------
    def _alloc_private_ip(self):
        n = self.s['ips']['next_private']
        self.s['ips']['next_private'] += 1
        return '10.0.%d.%d' % ((n // 250) % 250, n % 250 + 4)

    def _alloc_public_ip(self):
        ips = self.s['ips']
        if ips['public_free']:
            return ips['public_free'].pop(0)
        n = ips['next_public']
        ips['next_public'] += 1
        # 198.18.0.0/15, the benchmarking range: room for 130000 addresses.
        return '198.%d.%d.%d' % (18 + n // 65024, (n // 254) % 256, n % 254 + 1)

    def _release_public_ip(self, inst):
        if inst.get('public_ip'):
            self.s['ips']['public_free'].append(inst['public_ip'])
            inst['public_ip'] = None

    # ---- faults --------------------------------------------------------------------------
    def take_faults(self, method, path, action, phase, params=None):
        """The faults that fire for this request in this phase ('before'/'after')."""
        fired = []
        with self.lock:
            t = now()
            for f in list(self.s['faults']):
                if f.get('when', 'before') != phase:
                    continue
                if f.get('method') and f['method'].upper() != method:
                    continue
                if f.get('action') and f['action'] != action:
                    continue
                if f.get('params') and not all(
                        name in (params or {}) and re.search(rx, params[name])
                        for name, rx in f['params'].items()):
                    continue
                scope_rx = f.get('path_regex') or r'^/$'
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
                self._dirty = True
        return fired

    # ---- request log ---------------------------------------------------------------------
    def log_request(self, method, path, query, client, extra=None):
        with self.lock:
            self.log_seq += 1
            t = now()
            e = {'seq': self.log_seq, 't': t, 'time': iso(t), 'method': method, 'path': path,
                 'query': query, 'client': client, 'status': None, 'route': None}
            if extra:
                e.update(extra)
            self.log.append(e)
            limit = self.cfg['request_log_limit']
            if len(self.log) > limit:
                del self.log[:len(self.log) - limit]
            if path == '/':
                self.s['counters']['requests_total'] += 1
            return e

    def zone_asked(self, params):
        """The zone a call names, directly or through its subnet (for the request log)."""
        zone = params.get('Placement.AvailabilityZone') or params.get('AvailabilityZone')
        subnet = params.get('NetworkInterface.1.SubnetId') or params.get('SubnetId')
        if not zone and subnet:
            with self.lock:
                zone = self.s['catalogue']['subnets'].get(subnet, {}).get('zone')
        return zone

    def count(self, counter, key):
        c = self.s['counters'][counter]
        c[key] = c.get(key, 0) + 1

    # ---- authentication ------------------------------------------------------------------
    def authenticate(self, method, raw_path, raw_query, headers, body):
        """Checks the request's SigV4 signature; returns the access key id it was made with."""
        def refuse(status, code, message):
            with self.lock:
                self.s['counters']['auth_failures'] += 1
            raise Ec2Error(status, code, message)

        auth = headers.get('authorization')
        if not auth:
            refuse(401, 'AuthFailure', 'AWS was not able to validate the provided access '
                                       'credentials')
        parts = parse_authorization(auth)
        if not parts:
            refuse(400, 'IncompleteSignature', 'Authorization header requires \'Credential\', '
                   '\'SignedHeaders\' and \'Signature\' parameters, and the '
                   'AWS4-HMAC-SHA256 algorithm. Authorization=%s' % auth.split(' ')[0])
        scope = parts['Credential'].split('/')
        if len(scope) != 5 or scope[4] != 'aws4_request':
            refuse(400, 'IncompleteSignature', 'Credential must have exactly 5 slash-delimited '
                                               'elements, e.g. keyid/date/region/service/term')
        akid, date, region, service = scope[:4]
        with self.lock:
            cred = copy.deepcopy(self.s['credentials'].get(akid))
        if cred is None:
            refuse(401, 'AuthFailure', 'AWS was not able to validate the provided access '
                                       'credentials')
        signed = parts['SignedHeaders'].split(';')
        if 'host' not in signed:
            refuse(403, 'SignatureDoesNotMatch', '\'Host\' must be a \'SignedHeader\' in the '
                                                 'AWS Authorization.')
        amz_date = headers.get('x-amz-date')
        if not amz_date or 'x-amz-date' not in signed:
            refuse(400, 'IncompleteSignature', 'Authorization header requires existence of '
                                               'either a \'X-Amz-Date\' or a \'Date\' header.')
        try:
            t = datetime.datetime.strptime(amz_date, '%Y%m%dT%H%M%SZ').replace(
                tzinfo=datetime.timezone.utc).timestamp()
        except ValueError:
            refuse(400, 'IncompleteSignature', 'Date must be in ISO-8601 \'basic format\'. Got '
                                               '\'%s\'.' % amz_date)
        if abs(self.clock() - t) > float(self.cfg['max_skew']):
            refuse(400, 'RequestExpired', 'Request has expired.')
        if date != amz_date[:8]:
            refuse(403, 'SignatureDoesNotMatch', 'Date in Credential scope does not match '
                                                 'YYYYMMDD from ISO-8601 version of date from '
                                                 'HTTP: \'%s\' != \'%s\'' % (date, amz_date[:8]))
        if region != self.cfg['region']:
            refuse(403, 'SignatureDoesNotMatch', 'Credential should be scoped to a valid region. ')
        if service != 'ec2':
            refuse(403, 'SignatureDoesNotMatch', 'Credential should be scoped to correct '
                                                 'service: \'ec2\'. ')
        if cred['token']:
            if headers.get('x-amz-security-token') != cred['token']:
                refuse(401, 'AuthFailure', 'AWS was not able to validate the provided access '
                                           'credentials')
            if 'x-amz-security-token' not in signed:
                refuse(403, 'SignatureDoesNotMatch', 'The security token must be signed.')
        if cred['expires'] is not None and self.clock() >= cred['expires']:
            refuse(400, 'RequestExpired', 'Request has expired.')
        if not self.cfg['verify_signatures']:
            return akid
        canon_headers = ''
        for h in signed:
            values = headers.get_all(h) or []
            if not values:
                refuse(403, 'SignatureDoesNotMatch', 'The request signature we calculated does '
                       'not match the signature you provided. Check your AWS Secret Access Key '
                       'and signing method. Consult the service documentation for details.')
            canon_headers += '%s:%s\n' % (h, ','.join(' '.join(v.split()) for v in values))
        creq = '\n'.join([method, canonical_uri(raw_path), canonical_query(raw_query),
                          canon_headers, parts['SignedHeaders'],
                          hashlib.sha256(body).hexdigest()])
        sts = '\n'.join(['AWS4-HMAC-SHA256', amz_date, '/'.join(scope[1:]),
                         hashlib.sha256(creq.encode('utf-8')).hexdigest()])
        key = sigv4_signing_key(cred['secret'], date, region, service)
        expected = hmac.new(key, sts.encode('utf-8'), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, parts['Signature']):
            refuse(403, 'SignatureDoesNotMatch', 'The request signature we calculated does not '
                   'match the signature you provided. Check your AWS Secret Access Key and '
                   'signing method. Consult the service documentation for details.')
        return akid

    # ---- IMDSv2 --------------------------------------------------------------------------
    def imds(self, method, path, headers):
        """Returns (status, body bytes, content type)."""
        text = 'text/plain'
        with self.lock:
            if path == '/latest/api/token':
                if method != 'PUT':
                    return 405, b'', text
                if headers.get('x-forwarded-for'):
                    return 403, b'', text
                ttl = headers.get('x-aws-ec2-metadata-token-ttl-seconds')
                if not ttl or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                    return 400, b'', text
                token = 'AQAEA' + secrets.token_urlsafe(40)
                self.s['imds_tokens'][token] = now() + int(ttl)
                self.s['counters']['imds_tokens_issued'] += 1
                self._dirty = True
                return 200, token.encode(), text
            if not path.startswith('/latest/meta-data'):
                return 404, b'', 'text/html'
            token = headers.get('x-aws-ec2-metadata-token')
            if method != 'GET':
                return 405, b'', text
            if not token or self.s['imds_tokens'].get(token, 0) <= now():
                return 401, b'', text
            role = self.cfg['imds_role']
            sub = path[len('/latest/meta-data'):]
            if sub in ('', '/'):
                return 200, b'iam/\nplacement/\n', text
            if sub == '/placement/availability-zone':
                return 200, self.s['catalogue']['zones'][0].encode(), text
            if sub == '/iam/security-credentials/':
                return 200, role.encode(), text
            if sub == '/iam/security-credentials/' + role:
                return 200, json.dumps(self._imds_credentials(), indent=2).encode(), text
            return 404, b'', 'text/html'

    def _imds_credentials(self):
        """The role's temporary credentials: the same set until it nears its end, then a new
        one (IMDS renews them well before they expire)."""
        lifetime = float(self.cfg['imds_credentials_lifetime'])
        cur = self.s['imds_credentials']
        t = self.clock()
        if cur is None or cur['expires'] - t < min(300.0, lifetime / 3):
            cur = {'AccessKeyId': 'ASIA' + secrets.token_hex(8).upper(),
                   'SecretAccessKey': secrets.token_urlsafe(30),
                   'Token': 'IQoJb3JpZ2luX2VjE' + secrets.token_urlsafe(120),
                   'expires': t + lifetime, 'issued': t}
            self.s['imds_credentials'] = cur
            self._register(cur['AccessKeyId'], cur['SecretAccessKey'], cur['Token'],
                           cur['expires'], 'imds')
            self.s['counters']['imds_credentials_issued'] += 1
            self._dirty = True
        return {'Code': 'Success', 'LastUpdated': iso(cur['issued'])[:19] + 'Z',
                'Type': 'AWS-HMAC', 'AccessKeyId': cur['AccessKeyId'],
                'SecretAccessKey': cur['SecretAccessKey'], 'Token': cur['Token'],
                'Expiration': iso(cur['expires'])[:19] + 'Z'}

    # ---- the EC2 API ---------------------------------------------------------------------
    def ec2(self, params, principal):
        """Runs one call; returns (root element name, children) for render_xml."""
        self.advance()
        action = params.get('Action')
        if not action:
            raise Ec2Error(400, 'MissingAction', 'The request must contain the parameter Action')
        handler = {
            'RunInstances': self.run_instances,
            'DescribeInstances': self.describe_instances,
            'TerminateInstances': self.terminate_instances,
            'DescribeImages': self.describe_images,
            'CreateCapacityReservation': self.create_capacity_reservation,
            'DescribeCapacityReservations': self.describe_capacity_reservations,
            'CancelCapacityReservation': self.cancel_capacity_reservation,
        }.get(action)
        if handler is None:
            raise Ec2Error(400, 'InvalidAction',
                           'The action %s is not valid for this web service.' % action)
        version = params.get('Version')
        if not version:
            raise missing('Version')
        if version != API_VERSION:
            raise Ec2Error(400, 'InvalidParameterValue',
                           'Invalid API version %s; this endpoint speaks %s' %
                           (version, API_VERSION))
        validate_params(action, params)
        with self.lock:
            self.count('methods', action)
            self._dirty = True
            return handler(params, principal)

    # -- helpers
    def zones(self):
        return self.s['catalogue']['zones']

    def check_zone(self, zone):
        if zone not in self.zones():
            raise invalid_value('Invalid availability zone: [%s]' % zone)

    def check_type(self, itype, param='InstanceType'):
        if itype not in self.s['catalogue']['instanceTypes']:
            raise invalid_value('Invalid value \'%s\' for %s.' % (itype, param))

    def offered(self, zone, itype):
        offers = self.s['catalogue']['zoneInstanceTypes'].get(zone)
        return offers is None or itype in offers

    def unsupported(self, zone, itype):
        others = [z for z in self.zones() if z != zone and self.offered(z, itype)]
        return Ec2Error(400, 'Unsupported',
                        'Your requested instance type (%s) is not supported in your requested '
                        'Availability Zone (%s). Please retry your request by not specifying an '
                        'Availability Zone or choosing %s.' % (itype, zone, ', '.join(others)))

    def take_capacity(self, zone, itype, units, what):
        cap = self.s['capacity'].get(zone)
        if cap is None or cap['remaining'] is None:
            return
        if cap['remaining'] < units:
            others = [z for z in self.zones() if z != zone]
            code = cap.get('code') or 'InsufficientInstanceCapacity'
            if what == 'reservation' or code != 'InsufficientInstanceCapacity':
                msg = 'Insufficient capacity.'
            else:
                msg = ('We currently do not have sufficient %s capacity in the Availability '
                       'Zone you requested (%s). Our system will be working on provisioning '
                       'additional capacity. You can currently get %s capacity by not '
                       'specifying an Availability Zone in your request or choosing %s.'
                       % (itype, zone, itype, ', '.join(others)))
            raise Ec2Error(500, code, msg)
        cap['remaining'] -= units

    def check_quota(self, itype, count):
        live = [i for i in self.s['instances'].values()
                if i['state'] not in ('terminated', 'shutting-down')]
        limit = self.s['quotas'].get('instances')
        if limit is not None and len(live) + count > limit:
            raise Ec2Error(400, 'InstanceLimitExceeded',
                           'You have requested more instances (%d) than your current instance '
                           'limit of %d allows for the specified instance type. Please visit '
                           'http://aws.amazon.com/contact-us/ec2-request to request an '
                           'adjustment to this limit.' % (len(live) + count, limit))
        limit = self.s['quotas'].get('vcpus')
        if limit is not None:
            types = self.s['catalogue']['instanceTypes']
            used = sum(types.get(i['type'], 2) for i in live)
            if used + types[itype] * count > limit:
                raise Ec2Error(400, 'VcpuLimitExceeded',
                               'You have requested more vCPU capacity than your current vCPU '
                               'limit of %d allows for the instance bucket that the specified '
                               'instance type belongs to. Please visit '
                               'http://aws.amazon.com/contact-us/ec2-request to request an '
                               'adjustment to this limit.' % limit)

    def visible(self, thing):
        return now() >= thing['visible_at']

    def fingerprint(self, params):
        return hashlib.sha256(json.dumps(sorted((k, v) for k, v in params.items()
                                                if k != 'ClientToken')).encode()).hexdigest()

    def client_token(self, params):
        token = params.get('ClientToken')
        if token is not None and not 1 <= len(token) <= 64:
            raise invalid_value('Value (%s) for parameter clientToken is invalid. The client '
                                'token must be between 1 and 64 ASCII characters.' % token)
        if token is not None and not all(32 < ord(c) < 127 for c in token):
            raise invalid_value('The client token must be ASCII')
        return token

    def replay(self, kind, token, params):
        """The earlier result of an idempotent call with this token, if any."""
        if token is None:
            return None
        entry = self.s['tokens'].get(kind + ':' + token)
        if entry is None:
            return None
        if entry['fingerprint'] != self.fingerprint(params):
            raise Ec2Error(400, 'IdempotentParameterMismatch',
                           'Arguments on this idempotent request are inconsistent with '
                           'arguments used in previous request(s).')
        self.s['counters']['dedup_hits'] += 1
        return entry

    # -- instances
    def instance_xml(self, i):
        children = [
            ('instanceId', i['id']), ('imageId', i['image']),
            ('instanceState', [('code', STATE_CODES[i['state']]), ('name', i['state'])]),
            ('privateDnsName', 'ip-%s.%s.compute.internal' % (i['private_ip'].replace('.', '-'),
                                                              self.cfg['region'])),
            ('dnsName', 'ec2-%s.%s.compute.amazonaws.com' % (
                i['public_ip'].replace('.', '-'), self.cfg['region'])
             if i.get('public_ip') else ''),
            ('reason', i.get('transition_reason', '')),
            ('amiLaunchIndex', 0), ('productCodes', []), ('instanceType', i['type']),
            ('launchTime', iso(i['launch'])),
            ('placement', [('availabilityZone', i['zone']), ('groupName', ''),
                           ('tenancy', 'default')]),
            ('monitoring', [('state', 'disabled')]),
            ('subnetId', i['subnet']), ('vpcId', self.s['catalogue']['vpcId']),
            ('privateIpAddress', i['private_ip']),
            ('ipAddress', i.get('public_ip')),
            ('sourceDestCheck', True),
            ('groupSet', [('item', [('groupId', g), ('groupName', g.replace('sg-', 'group-'))])
                          for g in i['groups']]),
        ]
        if i.get('state_reason'):
            children.append(('stateReason', [('code', i['state_reason'][0]),
                                              ('message', i['state_reason'][1])]))
        children += [
            ('architecture', 'x86_64'), ('rootDeviceType', 'ebs'),
            ('rootDeviceName', '/dev/sda1'),
            ('blockDeviceMapping', [('item', [
                ('deviceName', '/dev/sda1'),
                ('ebs', [('volumeId', i['volume']), ('status', 'attached'),
                         ('attachTime', iso(i['launch'])), ('deleteOnTermination', True)])])]),
            ('virtualizationType', 'hvm'), ('clientToken', i.get('client_token') or ''),
            ('tagSet', tag_set(i['tags'])), ('hypervisor', 'xen'),
            ('networkInterfaceSet', [('item', self.interface_xml(i))]),
            ('ebsOptimized', False), ('enaSupport', True),
        ]
        if i.get('capacity_reservation'):
            children.append(('capacityReservationId', i['capacity_reservation']))
            children.append(('capacityReservationSpecification', [
                ('capacityReservationTarget', [
                    ('capacityReservationId', i['capacity_reservation'])])]))
        else:
            children.append(('capacityReservationSpecification', [
                ('capacityReservationPreference', 'open')]))
        children += [
            ('hibernationOptions', [('configured', False)]),
            ('metadataOptions', [('state', 'applied'), ('httpTokens', 'optional'),
                                 ('httpPutResponseHopLimit', 1), ('httpEndpoint', 'enabled'),
                                 ('httpProtocolIpv6', 'disabled'),
                                 ('instanceMetadataTags', 'disabled')]),
            ('platformDetails', 'Linux/UNIX'), ('usageOperation', 'RunInstances'),
        ]
        return children

    def interface_xml(self, i):
        private_dns = 'ip-%s.%s.compute.internal' % (i['private_ip'].replace('.', '-'),
                                                     self.cfg['region'])
        association = None
        if i.get('public_ip'):
            association = [('publicIp', i['public_ip']), ('publicDnsName', 'ec2-%s.%s.compute.'
                                                           'amazonaws.com' % (
                                                               i['public_ip'].replace('.', '-'),
                                                               self.cfg['region'])),
                           ('ipOwnerId', 'amazon')]
        mac = '02:%s' % ':'.join(i['eni'][4 + n:6 + n] for n in range(0, 10, 2))
        return [
            ('networkInterfaceId', i['eni']), ('subnetId', i['subnet']),
            ('vpcId', self.s['catalogue']['vpcId']), ('description', ''),
            ('ownerId', self.cfg['account_id']), ('status', 'in-use'), ('macAddress', mac),
            ('privateIpAddress', i['private_ip']), ('privateDnsName', private_dns),
            ('sourceDestCheck', True),
            ('groupSet', [('item', [('groupId', g), ('groupName', g.replace('sg-', 'group-'))])
                          for g in i['groups']]),
            ('attachment', [('attachmentId', 'eni-attach-' + i['eni'][4:]), ('deviceIndex', 0),
                            ('networkCardIndex', 0), ('status', 'attached'),
                            ('attachTime', iso(i['launch'])), ('deleteOnTermination', True)]),
            ('association', association),
            ('privateIpAddressesSet', [('item', [('privateIpAddress', i['private_ip']),
                                                 ('privateDnsName', private_dns),
                                                 ('primary', True),
                                                 ('association', association)])]),
            ('ipv6AddressesSet', []), ('interfaceType', 'interface'),
        ]

    def reservation_group(self, rid, instances):
        return [('reservationId', rid), ('ownerId', self.cfg['account_id']), ('groupSet', []),
                ('instancesSet', [('item', self.instance_xml(i)) for i in instances])]

    def run_instances(self, params, principal):
        token = self.client_token(params)
        name = None  # the Name tag the instance is to have, which the counters go by
        for spec in indexed_groups(params, 'TagSpecification'):
            if spec.get('ResourceType') == 'instance':
                tags = dict((g.get('Key'), g.get('Value', ''))
                            for g in indexed_groups(spec, 'Tag'))
                name = tags.get('Name')
        self.count('run_calls', name or token or '-')
        earlier = self.replay('run', token, params)
        if earlier is not None:
            instances = [self.s['instances'][i] for i in earlier['instances']
                         if i in self.s['instances']]
            return 'RunInstancesResponse', self.reservation_group(earlier['reservation'],
                                                                  instances)
        image = params.get('ImageId')
        if not image:
            raise missing('ImageId')
        itype = params.get('InstanceType', 'm1.small')
        self.check_type(itype)
        lo, hi = int(params['MinCount']), int(params['MaxCount'])
        if lo < 1 or hi < lo:
            raise invalid_value('Invalid value for MinCount/MaxCount: %d/%d' % (lo, hi))
        img = self.find_image(image)
        if img is None:
            raise Ec2Error(400, 'InvalidAMIID.NotFound' if re.fullmatch(r'ami-[0-9a-f]{8,17}',
                                                                        image)
                           else 'InvalidAMIID.Malformed',
                           'The image id \'[%s]\' does not exist' % image
                           if re.fullmatch(r'ami-[0-9a-f]{8,17}', image)
                           else 'Invalid id: "%s" (expecting "ami-...")' % image)
        # Where: a subnet (top level or on the network interface) decides the zone.
        nics = indexed_groups(params, 'NetworkInterface')
        if len(nics) > 1:
            raise invalid_value('Only one network interface is supported here')
        nic = nics[0] if nics else {}
        groups = indexed(params, 'SecurityGroupId')
        nic_groups = [nic[k] for k in sorted((k for k in nic if k.startswith('SecurityGroupId.')),
                                             key=lambda k: int(k.split('.')[1]))]
        if nic and groups:
            raise Ec2Error(400, 'InvalidParameterCombination',
                           'Network interfaces and an instance-level security groups may not be '
                           'specified on the same request')
        if nic and nic.get('DeviceIndex') != '0':
            raise invalid_value('The network interface needs DeviceIndex 0')
        subnet_id = nic.get('SubnetId') or params.get('SubnetId')
        groups = nic_groups or groups
        for g in groups:
            if g not in self.s['catalogue']['securityGroups']:
                raise Ec2Error(400, 'InvalidGroup.NotFound',
                               'The security group \'%s\' does not exist in VPC \'%s\''
                               % (g, self.s['catalogue']['vpcId']))
        zone = params.get('Placement.AvailabilityZone')
        subnet = None
        if subnet_id:
            subnet = self.s['catalogue']['subnets'].get(subnet_id)
            if subnet is None:
                raise Ec2Error(400, 'InvalidSubnetID.NotFound',
                               'The subnet ID \'%s\' does not exist' % subnet_id)
            if zone and zone != subnet['zone']:
                raise invalid_value('Value (%s) for parameter availabilityZone is invalid. '
                                    'Subnet %s is in availability zone %s'
                                    % (zone, subnet_id, subnet['zone']))
            zone = subnet['zone']
        # Into a capacity reservation?
        cr_id = params.get('CapacityReservationSpecification.CapacityReservationTarget.'
                           'CapacityReservationId')
        cr = None
        if cr_id:
            cr = self.s['reservations'].get(cr_id)
            if cr is None or not self.visible(cr):
                raise Ec2Error(400, 'InvalidCapacityReservationId.NotFound',
                               'The capacity reservation ID \'%s\' does not exist' % cr_id)
            if zone and zone != cr['zone']:
                raise invalid_value('The Availability Zone of the instance (%s) does not match '
                                    'the Availability Zone of Capacity Reservation %s (%s)'
                                    % (zone, cr_id, cr['zone']))
            zone = cr['zone']
        if zone is None:
            zone = next((z for z in self.zones() if self.offered(z, itype) and (
                self.s['capacity'].get(z, {}).get('remaining') in (None,) or
                self.s['capacity'][z]['remaining'] >= lo)), self.zones()[0])
        self.check_zone(zone)
        if not self.offered(zone, itype):
            raise self.unsupported(zone, itype)
        user_data = params.get('UserData')
        if user_data is not None:
            try:
                user_data = base64.b64decode(user_data, validate=True).decode('utf-8', 'replace')
            except (binascii.Error, ValueError):
                raise invalid_value('Invalid BASE64 encoding of user data.')
            if len(user_data) > 16384:
                raise invalid_value('User data is limited to 16384 bytes')
        tags, volume_tags = [], []
        seen_types = set()
        for spec in indexed_groups(params, 'TagSpecification'):
            rtype = spec.get('ResourceType')
            if rtype not in INSTANCE_TAG_TYPES:
                raise invalid_value('\'%s\' is not a valid taggable resource type for this '
                                    'operation.' % rtype)
            if rtype in seen_types:
                raise invalid_value('The same resource type may not be specified more than '
                                    'once in tag specifications')
            seen_types.add(rtype)
            parsed = parse_tags(indexed_groups(spec, 'Tag'),
                                'TagSpecification')
            if rtype == 'instance':
                tags = parsed
            elif rtype == 'volume':
                volume_tags = parsed
        if cr is not None:
            if cr['state'] != 'active':
                raise Ec2Error(400, 'InvalidCapacityReservationId.NotFound' if
                               cr['state'] in ('cancelled', 'expired') else 'IncorrectState',
                               'Capacity Reservation %s is %s and cannot be used'
                               % (cr_id, cr['state']))
            if cr['type'] != itype:
                raise invalid_value('The instance type %s does not match the instance type %s '
                                    'of Capacity Reservation %s' % (itype, cr['type'], cr_id))
            if self.cr_available(cr) < hi:
                raise Ec2Error(400, 'ReservationCapacityExceeded',
                               'The requested reservation does not have sufficient compatible '
                               'and available capacity for this request.')
        self.check_quota(itype, lo)
        if cr is None:
            self.take_capacity(zone, itype, hi, 'instance')
        wants_public = (nic.get('AssociatePublicIpAddress', '').lower() == 'true' if
                        'AssociatePublicIpAddress' in nic else
                        subnet['public'] if subnet is not None else True)
        rid = new_id('r-')
        made = []
        t = now()
        for n in range(hi):
            i = {'id': new_id('i-'), 'reservation': rid, 'zone': zone, 'type': itype,
                 'image': img['imageId'], 'state': 'pending', 'launch': t, 'seq': self.next_seq(),
                 'private_ip': self._alloc_private_ip(), 'public_ip': None,
                 'wants_public': wants_public,
                 'subnet': subnet_id or 'subnet-default-%s' % zone[-1], 'groups': groups,
                 'tags': [list(x) for x in tags], 'volume_tags': volume_tags,
                 'client_token': token, 'capacity_reservation': cr_id,
                 'user_data': user_data, 'eni': new_id('eni-'), 'volume': new_id('vol-'),
                 'shutdown_behavior': params.get('InstanceInitiatedShutdownBehavior', 'stop'),
                 'visible_at': t + float(self.cfg['consistency_delay']), 'principal': principal}
            self.s['instances'][i['id']] = i
            self.count('instances_created', tag_value(i['tags'], 'Name') or i['id'])
            self.schedule(self.cfg['pending_delay'], {'kind': 'running', 'id': i['id']})
            made.append(i)
        if token is not None:
            self.s['tokens']['run:' + token] = {'reservation': rid,
                                                'instances': [i['id'] for i in made],
                                                'fingerprint': self.fingerprint(params)}
        return 'RunInstancesResponse', self.reservation_group(rid, made)

    def cr_available(self, cr):
        used = sum(1 for i in self.s['instances'].values()
                   if i.get('capacity_reservation') == cr['id'] and
                   i['state'] not in ('terminated', 'shutting-down'))
        return max(0, cr['total'] - used)

    def check_instance_ids(self, ids):
        bad = [i for i in ids if not re.fullmatch(r'i-[0-9a-f]{8,17}', i)]
        if bad:
            raise Ec2Error(400, 'InvalidInstanceID.Malformed', 'Invalid id: "%s"' % bad[0])
        unknown = [i for i in ids if i not in self.s['instances']]
        unseen = [i for i in ids if i in self.s['instances'] and
                  not self.visible(self.s['instances'][i])]
        if unseen:
            self.s['counters']['consistency_not_found'] += 1
        gone = unknown + unseen
        if len(gone) == 1:
            raise Ec2Error(400, 'InvalidInstanceID.NotFound',
                           'The instance ID \'%s\' does not exist' % gone[0])
        if gone:
            raise Ec2Error(400, 'InvalidInstanceID.NotFound',
                           'The instance IDs \'%s\' do not exist' % ', '.join(gone))

    INSTANCE_FILTERS = {
        'instance-id': lambda i: [i['id']],
        'instance-state-name': lambda i: [i['state']],
        'instance-state-code': lambda i: [str(STATE_CODES[i['state']])],
        'availability-zone': lambda i: [i['zone']],
        'instance-type': lambda i: [i['type']],
        'image-id': lambda i: [i['image']],
        'client-token': lambda i: [i.get('client_token')],
        'reservation-id': lambda i: [i['reservation']],
        'subnet-id': lambda i: [i['subnet']],
        'capacity-reservation-id': lambda i: [i.get('capacity_reservation')],
        'private-ip-address': lambda i: [i['private_ip']],
        'ip-address': lambda i: [i.get('public_ip')],
        'tag-key': lambda i: [k for k, _ in i['tags']],
    }

    def filtered(self, things, filters, table):
        out = []
        for name, _ in filters:
            if name not in table and not name.startswith('tag:'):
                raise invalid_value('The filter \'%s\' is invalid' % name)
        for t in things:
            ok = True
            for name, values in filters:
                if name.startswith('tag:'):
                    cands = [v for k, v in t['tags'] if k == name[4:]]
                else:
                    cands = table[name](t)
                if not matches(cands, values):
                    ok = False
                    break
            if ok:
                out.append(t)
        return out

    def page(self, things, params, lo=5, hi=1000, by_id=False):
        """Sorted by creation; NextToken is the last position handed out."""
        things = sorted(things, key=lambda t: t['seq'])
        max_results = params.get('MaxResults')
        if max_results is not None:
            if by_id:
                raise Ec2Error(400, 'InvalidParameterCombination',
                               'The parameter instancesSet cannot be used with the parameter '
                               'maxResults')
            n = int(max_results)
            if not lo <= n <= hi:
                raise invalid_value('Value ( %d ) for parameter maxResults is invalid. Expecting '
                                    'a value between %d and %d.' % (n, lo, hi))
        else:
            n = None
        token = params.get('NextToken')
        if token:
            try:
                after = int(base64.urlsafe_b64decode(token.encode()).decode().split(':')[1])
            except (ValueError, IndexError, binascii.Error, UnicodeDecodeError):
                raise Ec2Error(400, 'InvalidPaginationToken',
                               'Invalid pagination token: %s' % token)
            things = [t for t in things if t['seq'] > after]
        cap = int(self.cfg['max_page_size'])
        limit = min(n, cap) if n is not None else (cap if not by_id else None)
        if limit is not None and len(things) > limit:
            page = things[:limit]
            nxt = base64.urlsafe_b64encode(('page:%d:%s' % (page[-1]['seq'],
                                                            secrets.token_hex(4))).encode())
            return page, nxt.decode()
        return things, None

    def describe_instances(self, params, principal):
        ids = indexed(params, 'InstanceId')
        filters = parse_filters(params)
        if ids:
            self.check_instance_ids(ids)
            things = [self.s['instances'][i] for i in ids]
        else:
            things = [i for i in self.s['instances'].values() if self.visible(i)]
        things = self.filtered(things, filters, self.INSTANCE_FILTERS)
        page, nxt = self.page(things, params, by_id=bool(ids))
        by_res = {}
        for i in page:
            by_res.setdefault(i['reservation'], []).append(i)
        children = [('reservationSet', [('item', self.reservation_group(rid, insts))
                                        for rid, insts in by_res.items()])]
        if nxt:
            children.append(('nextToken', nxt))
        return 'DescribeInstancesResponse', children

    def terminate_instances(self, params, principal):
        ids = indexed(params, 'InstanceId')
        if not ids:
            raise missing('InstanceId')
        for i in ids:
            self.count('terminate_calls', tag_value(self.s['instances'][i]['tags'], 'Name')
                       if i in self.s['instances'] else i)
        self.check_instance_ids(ids)
        changes = []
        for iid in ids:
            i = self.s['instances'][iid]
            before = i['state']
            if before in ('pending', 'running', 'stopping', 'stopped'):
                i['state'] = 'shutting-down'
                i['transition_reason'] = 'User initiated (%s)' % iso(now())[:19].replace('T', ' ')
                i['state_reason'] = ['Client.UserInitiatedShutdown',
                                     'Client.UserInitiatedShutdown: User initiated shutdown']
                self.schedule(self.cfg['stopping_delay'], {'kind': 'terminated', 'id': iid})
            changes.append(('item', [
                ('instanceId', iid),
                ('currentState', [('code', STATE_CODES[i['state']]), ('name', i['state'])]),
                ('previousState', [('code', STATE_CODES[before]), ('name', before)])]))
        return 'TerminateInstancesResponse', [('instancesSet', changes)]

    # -- images
    def image_owner(self, img):
        return self.cfg['account_id'] if img['ownerId'] == 'self' else img['ownerId']

    def find_image(self, image_id):
        return next((i for i in self.s['catalogue']['images'] if i['imageId'] == image_id), None)

    def describe_images(self, params, principal):
        owners = indexed(params, 'Owner')
        ids = indexed(params, 'ImageId')
        images = list(self.s['catalogue']['images'])
        for n, img in enumerate(images):
            img.setdefault('seq', n + 1)
        if ids:
            for i in ids:
                if not re.fullmatch(r'ami-[0-9a-f]{8,17}', i):
                    raise Ec2Error(400, 'InvalidAMIID.Malformed',
                                   'Invalid id: "%s" (expecting "ami-...")' % i)
                if self.find_image(i) is None:
                    raise Ec2Error(400, 'InvalidAMIID.NotFound',
                                   'The image id \'[%s]\' does not exist' % i)
            images = [i for i in images if i['imageId'] in ids]
        if owners:
            def owned(img):
                for o in owners:
                    if o == 'self' and img['ownerId'] == 'self':
                        return True
                    if o in ('amazon', 'aws-marketplace', 'aws-backup-vault') and \
                            img.get('ownerAlias') == o:
                        return True
                    if o == self.image_owner(img):
                        return True
                return False
            images = [i for i in images if owned(i)]
        table = {'name': lambda i: [i['name']], 'state': lambda i: [i['state']],
                 'image-id': lambda i: [i['imageId']],
                 'owner-id': lambda i: [self.image_owner(i)],
                 'owner-alias': lambda i: [i.get('ownerAlias')],
                 'architecture': lambda i: ['x86_64'], 'is-public': lambda i: [
                     'false' if i['ownerId'] == 'self' else 'true'],
                 'image-type': lambda i: ['machine'], 'tag-key': lambda i: []}
        for img in images:
            img.setdefault('tags', [])
        images = self.filtered(images, parse_filters(params), table)
        page, nxt = self.page(images, params)
        items = []
        for img in page:
            items.append(('item', [
                ('imageId', img['imageId']),
                ('imageLocation', '%s/%s' % (self.image_owner(img), img['name'])),
                ('imageState', img['state']), ('imageOwnerId', self.image_owner(img)),
                ('creationDate', img['creationDate']),
                ('isPublic', img['ownerId'] != 'self'),
                ('architecture', 'x86_64'), ('imageType', 'machine'),
                ('imageOwnerAlias', img.get('ownerAlias')),
                ('name', img['name']), ('rootDeviceType', 'ebs'),
                ('rootDeviceName', '/dev/sda1'),
                ('blockDeviceMapping', [('item', [
                    ('deviceName', '/dev/sda1'),
                    ('ebs', [('snapshotId', 'snap-' + img['imageId'][4:]), ('volumeSize', 8),
                             ('deleteOnTermination', True), ('volumeType', 'gp3'),
                             ('encrypted', False)])])]),
                ('virtualizationType', 'hvm'), ('hypervisor', 'xen'), ('enaSupport', True),
                ('platformDetails', 'Linux/UNIX'), ('usageOperation', 'RunInstances')]))
        children = [('imagesSet', items)]
        if nxt:
            children.append(('nextToken', nxt))
        return 'DescribeImagesResponse', children

    # -- capacity reservations
    def reservation_xml(self, r):
        children = [
            ('capacityReservationId', r['id']), ('ownerId', self.cfg['account_id']),
            ('capacityReservationArn', 'arn:aws:ec2:%s:%s:capacity-reservation/%s'
             % (self.cfg['region'], self.cfg['account_id'], r['id'])),
            ('availabilityZoneId', self.s['catalogue']['zoneIds'].get(r['zone'], r['zone'])),
            ('instanceType', r['type']), ('instancePlatform', r['platform']),
            ('availabilityZone', r['zone']), ('tenancy', r['tenancy']),
            ('totalInstanceCount', r['total']),
            ('availableInstanceCount', self.cr_available(r) if r['state'] in ('active',
                                                                               'pending') else 0),
            ('ebsOptimized', r['ebs_optimized']), ('ephemeralStorage', False),
            ('state', r['state']), ('startDate', iso(r['created'])),
        ]
        if r.get('end_date') is not None:
            children.append(('endDate', iso(r['end_date'])))
        children += [('endDateType', r['end_date_type']),
                     ('instanceMatchCriteria', r['match']), ('createDate', iso(r['created'])),
                     ('tagSet', tag_set(r['tags'])), ('capacityAllocationSet', []),
                     ('reservationType', 'default'), ('deliveryPreference', 'fixed')]
        return children

    def create_capacity_reservation(self, params, principal):
        token = self.client_token(params)
        name = None
        for spec in indexed_groups(params, 'TagSpecifications'):
            tags = dict((g.get('Key'), g.get('Value', '')) for g in indexed_groups(spec, 'Tag'))
            name = tags.get('Name', name)
        self.count('reservation_create_calls', name or token or '-')
        earlier = self.replay('ccr', token, params)
        if earlier is not None:
            r = self.s['reservations'].get(earlier['id'])
            if r is not None:
                return ('CreateCapacityReservationResponse',
                        [('capacityReservation', self.reservation_xml(r))])
        itype = params['InstanceType']
        self.check_type(itype)
        count = int(params['InstanceCount'])
        if count < 1:
            raise invalid_value('Value (%d) for parameter instanceCount is invalid. It must be '
                                'at least 1.' % count)
        zone = params.get('AvailabilityZone')
        if not zone and params.get('AvailabilityZoneId'):
            ids = {v: k for k, v in self.s['catalogue']['zoneIds'].items()}
            zone = ids.get(params['AvailabilityZoneId'])
            if zone is None:
                raise invalid_value('Invalid availability zone ID: [%s]'
                                    % params['AvailabilityZoneId'])
        if not zone:
            raise missing('AvailabilityZone')
        self.check_zone(zone)
        end_type = params.get('EndDateType', 'unlimited')
        end_date = None
        if end_type == 'limited':
            if 'EndDate' not in params:
                raise Ec2Error(400, 'InvalidParameterCombination',
                               'EndDate must be specified when EndDateType is limited')
            end_date = parse_iso(params['EndDate'])
            if end_date <= self.clock():
                raise invalid_value('The end date must be in the future')
        elif 'EndDate' in params:
            raise Ec2Error(400, 'InvalidParameterCombination',
                           'EndDate cannot be specified when EndDateType is unlimited')
        tags = []
        for spec in indexed_groups(params, 'TagSpecifications'):
            if spec.get('ResourceType') != 'capacity-reservation':
                raise invalid_value('\'%s\' is not a valid taggable resource type for this '
                                    'operation.' % spec.get('ResourceType'))
            tags = parse_tags(indexed_groups(spec, 'Tag'), 'TagSpecifications')
        if not self.offered(zone, itype):
            raise self.unsupported(zone, itype)
        self.check_quota(itype, count)
        self.take_capacity(zone, itype, count, 'reservation')
        t = now()
        r = {'id': new_id('cr-'), 'zone': zone, 'type': itype, 'seq': self.next_seq(),
             'platform': params['InstancePlatform'], 'tenancy': params.get('Tenancy', 'default'),
             'total': count, 'state': 'pending', 'created': t, 'end_date': end_date,
             'end_date_type': end_type, 'match': params.get('InstanceMatchCriteria', 'open'),
             'ebs_optimized': params.get('EbsOptimized', 'false').lower() == 'true',
             'tags': tags, 'client_token': token,
             'visible_at': t + float(self.cfg['consistency_delay']), 'principal': principal}
        self.s['reservations'][r['id']] = r
        self.count('reservations_created', name or r['id'])
        self.schedule(self.cfg['reservation_create_delay'], {'kind': 'active', 'id': r['id']})
        if end_date is not None:
            self.schedule(end_date - self.clock(), {'kind': 'expire', 'id': r['id']})
        if token is not None:
            self.s['tokens']['ccr:' + token] = {'id': r['id'],
                                                'fingerprint': self.fingerprint(params)}
        return 'CreateCapacityReservationResponse', [('capacityReservation',
                                                      self.reservation_xml(r))]

    RESERVATION_FILTERS = {
        'capacity-reservation-id': lambda r: [r['id']],
        'instance-type': lambda r: [r['type']],
        'owner-id': lambda r: [r['owner']],
        'instance-platform': lambda r: [r['platform']],
        'availability-zone': lambda r: [r['zone']],
        'tenancy': lambda r: [r['tenancy']],
        'state': lambda r: [r['state']],
        'end-date-type': lambda r: [r['end_date_type']],
        'instance-match-criteria': lambda r: [r['match']],
        'tag-key': lambda r: [k for k, _ in r['tags']],
    }

    def check_reservation_ids(self, ids):
        for i in ids:
            if not re.fullmatch(r'cr-[0-9a-f]{8,17}', i):
                raise Ec2Error(400, 'InvalidCapacityReservationId.Malformed',
                               'Invalid id: "%s" (expecting "cr-...")' % i)
            r = self.s['reservations'].get(i)
            if r is None or not self.visible(r):
                if r is not None:
                    self.s['counters']['consistency_not_found'] += 1
                raise Ec2Error(400, 'InvalidCapacityReservationId.NotFound',
                               'The capacity reservation ID \'%s\' does not exist' % i)

    def describe_capacity_reservations(self, params, principal):
        ids = indexed(params, 'CapacityReservationId')
        if ids:
            self.check_reservation_ids(ids)
            things = [self.s['reservations'][i] for i in ids]
        else:
            things = [r for r in self.s['reservations'].values() if self.visible(r)]
        for r in things:
            r['owner'] = self.cfg['account_id']
        things = self.filtered(things, parse_filters(params), self.RESERVATION_FILTERS)
        page, nxt = self.page(things, params, lo=1, hi=1000)
        children = [('capacityReservationSet', [('item', self.reservation_xml(r))
                                                for r in page])]
        if nxt:
            children.append(('nextToken', nxt))
        return 'DescribeCapacityReservationsResponse', children

    def cancel_capacity_reservation(self, params, principal):
        cid = params['CapacityReservationId']
        r = self.s['reservations'].get(cid)
        self.count('cancel_calls', tag_value(r['tags'], 'Name') if r else cid)
        self.check_reservation_ids([cid])
        if r['state'] in ('cancelled', 'expired', 'failed'):
            raise Ec2Error(400, 'IncorrectState',
                           'The Capacity Reservation %s is in state %s and cannot be cancelled'
                           % (cid, r['state']))
        r['state'] = 'cancelled'
        r['ended'] = now()
        self.schedule(self.cfg['cancelled_visible'], {'kind': 'forget_reservation', 'id': cid})
        return 'CancelCapacityReservationResponse', [('return', True)]

    # ---- control API ---------------------------------------------------------------------
    def control(self, method, path, query, body):
        self.advance()
        try:
            data = json.loads(body) if body else {}
        except ValueError:
            return 400, {'error': 'body is not JSON'}
        if not isinstance(data, dict):
            return 400, {'error': 'body must be a JSON object'}
        p = path[len('/_emulator/'):].strip('/')
        q = urllib.parse.parse_qs(query, keep_blank_values=True)

        def qget(k, d=None):
            return q.get(k, [d])[0]
        with self.lock:
            self._dirty = True
            if p == 'reset' and method == 'POST':
                bad = [k for k in (data.get('config') or {}) if k not in DEFAULT_CONFIG]
                if bad:
                    return 400, {'error': 'unknown config keys: %s' % ', '.join(bad)}
                self.reset(data.get('config'))
                return 200, {'ok': True}
            if p == 'config':
                if method == 'POST':
                    unknown = [k for k in data if k not in DEFAULT_CONFIG]
                    if unknown:
                        return 400, {'error': 'unknown config keys: %s' % ', '.join(unknown)}
                    self.s['config'].update(data)
                return 200, self.public_config()
            if p == 'catalogue':
                if method == 'POST':
                    unknown = [k for k in data if k not in DEFAULT_CATALOGUE]
                    if unknown:
                        return 400, {'error': 'unknown catalogue keys: %s' % ', '.join(unknown)}
                    self.s['catalogue'].update(copy.deepcopy(data))
                return 200, self.s['catalogue']
            if p == 'credentials' and method == 'POST':
                akid = data.get('access_key_id') or 'AKIA' + secrets.token_hex(8).upper()
                secret = data.get('secret_access_key') or secrets.token_urlsafe(30)
                exp = data.get('expires_in')
                self._register(akid, secret, data.get('session_token'),
                               None if exp is None else self.clock() + float(exp), 'static')
                return 200, {'access_key_id': akid, 'secret_access_key': secret,
                             'session_token': data.get('session_token'),
                             'expires': self.s['credentials'][akid]['expires']}
            if p == 'credentials' and method == 'GET':
                return 200, {'credentials': [
                    {'access_key_id': k, 'source': v['source'], 'expires': v['expires'],
                     'session': bool(v['token'])} for k, v in self.s['credentials'].items()]}
            if p == 'credentials' and method == 'DELETE':
                self.s['credentials'].pop(data.get('access_key_id') or qget('access_key_id'),
                                          None)
                return 200, {'ok': True}
            if p == 'credentials/expire' and method == 'POST':
                hit = [k for k, v in self.s['credentials'].items()
                       if data.get('access_key_id') in (None, k) and
                       (data.get('source') in (None, v['source']))]
                for k in hit:
                    self.s['credentials'][k]['expires'] = self.clock()
                if data.get('source') in (None, 'imds') and self.s['imds_credentials']:
                    if self.s['imds_credentials']['AccessKeyId'] in hit:
                        self.s['imds_credentials']['expires'] = self.clock()
                return 200, {'expired': len(hit)}
            if p == 'capacity':
                if method == 'POST':
                    zones = data.get('zones') or [data.get('zone')]
                    if not zones or None in zones:
                        return 400, {'error': 'zone or zones is required'}
                    code = data.get('code', 'InsufficientInstanceCapacity')
                    if code not in ('InsufficientInstanceCapacity', 'InsufficientCapacity'):
                        return 400, {'error': 'code must be InsufficientInstanceCapacity or '
                                              'InsufficientCapacity'}
                    for z in zones:
                        if 'remaining' in data and data['remaining'] is None:
                            self.s['capacity'].pop(z, None)
                            continue
                        self.s['capacity'][z] = {'remaining': int(data.get('remaining', 0)),
                                                 'code': code}
                return 200, self.s['capacity']
            if p == 'offerings':
                # {"zone": Z, "instance_types": [..] or null}: what a zone offers.
                if method == 'POST':
                    if not data.get('zone'):
                        return 400, {'error': 'zone is required'}
                    if data.get('instance_types') is None:
                        self.s['catalogue']['zoneInstanceTypes'].pop(data['zone'], None)
                    else:
                        self.s['catalogue']['zoneInstanceTypes'][data['zone']] = \
                            list(data['instance_types'])
                return 200, self.s['catalogue']['zoneInstanceTypes']
            if p == 'quota':
                if method == 'POST':
                    metric = data.get('metric', 'vcpus')
                    if metric not in ('vcpus', 'instances'):
                        return 400, {'error': 'metric must be vcpus or instances'}
                    if data.get('limit') is None:
                        self.s['quotas'].pop(metric, None)
                    else:
                        self.s['quotas'][metric] = int(data['limit'])
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
                    f.setdefault('status', 503)
                    if f['status'] != 503:
                        return 400, {'error': 'EC2 throttles with 503 RequestLimitExceeded'}
                if f['kind'] == 'error':
                    f.setdefault('status', 503)
                    if f['status'] not in (500, 503):
                        return 400, {'error': 'fail status must be 500 or 503'}
                if f['kind'] == 'stall':
                    f.setdefault('seconds', 5)
                try:
                    for rx in [f.get('path_regex') or ''] + list((f.get('params') or {}).values()):
                        re.compile(rx)
                except (re.error, TypeError) as exc:
                    return 400, {'error': 'bad regular expression: %s' % exc}
                f['id'] = self.next_seq()
                self.s['faults'].append(f)
                return 200, f
            if p == 'instances' and method == 'POST':
                if isinstance(data.get('instances'), list):
                    return 200, {'instances': [self._plant_instance(d)
                                               for d in data['instances']]}
                return 200, self._plant_instance(data)
            if p == 'instances' and method == 'GET':
                return 200, {'instances': self._state_instances()}
            if p == 'instances/terminate' and method == 'POST':
                # Someone else terminates it (the console, another tool): no API call, no log.
                i = self.s['instances'].get(data.get('id'))
                if i is None:
                    return 404, {'error': 'no instance %s' % data.get('id')}
                if i['state'] not in ('shutting-down', 'terminated'):
                    i['state'] = 'shutting-down'
                    i['state_reason'] = ['Client.UserInitiatedShutdown',
                                         'Client.UserInitiatedShutdown: User initiated shutdown']
                    self.schedule(self.cfg['stopping_delay'], {'kind': 'terminated',
                                                               'id': i['id']})
                return 200, next(x for x in self._state_instances() if x['id'] == i['id'])
            if p == 'reservations' and method == 'POST':
                if isinstance(data.get('reservations'), list):
                    return 200, {'reservations': [self._plant_reservation(d)
                                                  for d in data['reservations']]}
                return 200, self._plant_reservation(data)
            if p == 'reservations' and method == 'GET':
                return 200, {'reservations': self._state_reservations()}
            if p == 'state' and method == 'GET':
                return 200, {'instances': self._state_instances(),
                             'reservations': self._state_reservations(),
                             'capacity': self.s['capacity'], 'quotas': self.s['quotas'],
                             'faults': self.s['faults'], 'counters': self.s['counters'],
                             'config': self.public_config()}
            if p == 'counters' and method == 'GET':
                return 200, self.s['counters']
            if p == 'requests':
                if method == 'DELETE':
                    self.log = []
                    return 200, {'ok': True}
                since = int(qget('since', 0) or 0)
                prefix = qget('path_prefix', '')
                return 200, {'requests': [e for e in self.log if e['seq'] > since and
                                          e['path'].startswith(prefix)]}
        return 404, {'error': 'unknown control call %s %s' % (method, path)}

    def public_config(self):
        c = dict(self.s['config'])
        c['secret_access_key'] = '(set)'
        return c

    def _state_instances(self):
        out = []
        for i in sorted(self.s['instances'].values(), key=lambda i: i['seq']):
            out.append({'id': i['id'], 'zone': i['zone'], 'name': tag_value(i['tags'], 'Name'),
                        'state': i['state'], 'tags': dict(i['tags']),
                        'volume_tags': dict(i['volume_tags']), 'instanceType': i['type'],
                        'imageId': i['image'], 'launchTime': iso(i['launch']),
                        'privateIp': i['private_ip'], 'publicIp': i.get('public_ip'),
                        'clientToken': i.get('client_token'),
                        'capacityReservationId': i.get('capacity_reservation'),
                        'subnetId': i['subnet'], 'securityGroups': i['groups'],
                        'userData': i.get('user_data'),
                        'shutdownBehavior': i.get('shutdown_behavior'),
                        'accessKey': i.get('principal')})
        return out

    def _state_reservations(self):
        out = []
        for r in sorted(self.s['reservations'].values(), key=lambda r: r['seq']):
            available = self.cr_available(r)
            out.append({'id': r['id'], 'zone': r['zone'], 'name': tag_value(r['tags'], 'Name'),
                        'state': r['state'], 'instanceType': r['type'], 'count': r['total'],
                        'available': available, 'inUse': r['total'] - available,
                        'endDate': iso(r['end_date']) if r.get('end_date') else None,
                        'endDateType': r['end_date_type'], 'instanceMatchCriteria': r['match'],
                        'platform': r['platform'], 'tags': dict(r['tags']),
                        'clientToken': r.get('client_token'),
                        'createDate': iso(r['created'])})
        return out

    def _plant_instance(self, d):
        """An instance made outside the API (no token, no capacity): the reconciler's orphans."""
        zone = d.get('zone') or self.zones()[0]
        t = parse_iso(d['launchTime']) if d.get('launchTime') else now()
        state = d.get('state', 'running')
        if state not in STATE_CODES:
            return {'error': 'state must be one of %s' % ', '.join(STATE_CODES)}
        i = {'id': d.get('id') or new_id('i-'), 'reservation': new_id('r-'), 'zone': zone,
             'type': d.get('instanceType', 'm5.large'),
             'image': d.get('imageId', 'ami-0c1bea58988a98915'), 'state': state, 'launch': t,
             'seq': self.next_seq(), 'private_ip': self._alloc_private_ip(),
             'public_ip': None, 'wants_public': d.get('public', True),
             'subnet': 'subnet-default-%s' % zone[-1], 'groups': [],
             'tags': [[k, v] for k, v in (d.get('tags') or {}).items()], 'volume_tags': [],
             'client_token': None, 'capacity_reservation': d.get('capacityReservationId'),
             'user_data': None, 'eni': new_id('eni-'), 'volume': new_id('vol-'),
             'visible_at': 0.0, 'principal': None}
        if state == 'running' and i['wants_public']:
            i['public_ip'] = self._alloc_public_ip()
        self.s['instances'][i['id']] = i
        return next(x for x in self._state_instances() if x['id'] == i['id'])

    def _plant_reservation(self, d):
        zone = d.get('zone') or self.zones()[0]
        created = parse_iso(d['createDate']) if d.get('createDate') else now()
        end = parse_iso(d['endDate']) if d.get('endDate') else None
        r = {'id': d.get('id') or new_id('cr-'), 'zone': zone,
             'type': d.get('instanceType', 'm5.large'), 'seq': self.next_seq(),
             'platform': 'Linux/UNIX', 'tenancy': 'default', 'total': int(d.get('count', 1)),
             'state': d.get('state', 'active'), 'created': created, 'end_date': end,
             'end_date_type': 'limited' if end else 'unlimited',
             'match': d.get('instanceMatchCriteria', 'targeted'), 'ebs_optimized': False,
             'tags': [[k, v] for k, v in (d.get('tags') or {}).items()], 'client_token': None,
             'visible_at': 0.0, 'principal': None}
        self.s['reservations'][r['id']] = r
        if end is not None:
            self.schedule(end - self.clock(), {'kind': 'expire', 'id': r['id']})
        return next(x for x in self._state_reservations() if x['id'] == r['id'])


EC2_5XX = {
    500: ('InternalError', 'An internal error has occurred.'),
    503: ('Unavailable', 'The server is overloaded and can\'t handle the request.'),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'AmazonEC2'
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

    def version_string(self):
        return self.server_version

    def date_time_string(self, timestamp=None):
        # The Date header is the emulator's clock, set off on purpose by clock_offset.
        return email.utils.formatdate(self.server.emu.clock(), usegmt=True)

    def do_GET(self):
        self._handle('GET')

    def do_POST(self):
        self._handle('POST')

    def do_PUT(self):
        self._handle('PUT')

    def do_DELETE(self):
        self._handle('DELETE')

    def _read_body(self):
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def _send(self, status, data, ctype='text/xml;charset=UTF-8', headers=None):
        # The log entry is complete before the first byte leaves, so a client that reads the
        # request log right after its answer always sees its own request finished.
        self._status = status
        self._finish_entry()
        self.send_response(status)
        self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data or b'')))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if data:
            self.wfile.write(data)

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

    def _send_error(self, err, request_id):
        hdrs = dict(err.headers)
        hdrs['x-amzn-RequestId'] = request_id
        self._send(err.status, render_error(err, request_id), headers=hdrs)

    def _handle(self, method):
        emu = self.server.emu
        self._status = None
        t0 = now()
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        body = self._read_body()
        params = {}
        form = self.headers.get('Content-Type', '').startswith('application/x-www-form-urlencoded')
        if path == '/':
            raw = url.query
            if method == 'POST' and body and form:
                raw = (raw + '&' if raw else '') + body.decode('utf-8', 'replace')
            params = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
        action = params.get('Action')
        entry = emu.log_request(method, path, url.query, self.client_address[0],
                                {'user_agent': self.headers.get('User-Agent', ''),
                                 'route': action if path == '/' else None,
                                 'zone': emu.zone_asked(params)})
        self._entry, self._t0 = entry, t0
        request_id = str(uuid.uuid4())
        try:
            if path.startswith('/_emulator/'):
                status, obj = emu.control(method, path, url.query, body)
                self._send(status, json.dumps(obj, indent=1).encode(), 'application/json')
                return
            if path.startswith('/latest/'):
                entry['route'] = 'imds'
                status, data, ctype = emu.imds(method, path, self.headers)
                self._send(status, data, ctype)
                return
            if path != '/':
                raise Ec2Error(404, 'InvalidAction', 'The requested URL %s was not found' % path)
            if method not in ('GET', 'POST'):
                raise Ec2Error(405, 'UnsupportedProtocol', '%s is not supported' % method)
            if method == 'POST' and body and not form:
                raise Ec2Error(400, 'InvalidParameterValue',
                               'The request body must be application/x-www-form-urlencoded')
            faults = emu.take_faults(method, path, action, 'before', params)
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
                    hdrs = {'Retry-After': str(f['retry_after'])} if f.get('retry_after') else {}
                    raise Ec2Error(503, 'RequestLimitExceeded', f.get('message') or
                                   'Request limit exceeded.', hdrs)
                if f['kind'] == 'error':
                    code, msg = EC2_5XX[int(f['status'])]
                    raise Ec2Error(int(f['status']), code, f.get('message') or msg)
            principal = emu.authenticate(method, path, url.query, self.headers, body)
            entry['access_key'] = principal
            root, children = emu.ec2(params, principal)
            data = render_xml(root, children, request_id)
            after = emu.take_faults(method, path, action, 'after', params)
            if after:
                entry['fault'] = entry.get('fault', []) + [f['kind'] + '-after' for f in after]
            for f in after:
                if f['kind'] == 'stall':
                    time.sleep(float(f.get('seconds', 5)))
            for f in after:
                if f['kind'] == 'drop':
                    self._drop(bool(f.get('reset')))
                    return
            self._send(200, data, headers={'x-amzn-RequestId': request_id})
        except Ec2Error as err:
            entry['error'] = err.code
            try:
                self._send_error(err, request_id)
            except (BrokenPipeError, ConnectionResetError):
                self._status = 'client-gone'
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self._status = 'client-gone'
            self.close_connection = True
        except Exception as exc:  # an emulator bug: answered the way EC2 answers a 500
            import traceback
            traceback.print_exc()
            self._send_error(Ec2Error(500, 'InternalError', 'emulator: %r' % exc), request_id)
        finally:
            self._finish_entry()

    def _finish_entry(self):
        with self.server.emu.lock:
            self._entry['status'] = self._status
            self._entry['duration_ms'] = round((now() - self._t0) * 1000, 2)


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
    if cfg:
        unknown = [k for k in cfg if k not in DEFAULT_CONFIG]
        if unknown:
            ap.error('unknown config keys: %s' % ', '.join(unknown))
    emu = Emulator(state_file=args.state_file, config=cfg, verbose=args.verbose)
    srv = Server((args.host, args.port), Handler)
    srv.emu = emu
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
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
                    sys.stderr.write('ec2_emulator: cannot save state: %s\n' % exc)
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
    sys.stderr.write('ec2_emulator listening on %s://%s:%d\n' % (emu.scheme, args.host, port))
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
