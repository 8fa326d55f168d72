#!/usr/bin/env python3
"""Oracle Cloud Infrastructure Core Services (API 20160918) emulator for tests (stdlib only).

Speaks OCI's wire format under /20160918/... for instances, VNIC attachments, VNICs, compute
capacity reservations and work requests, checks the HTTP signature (draft-cavage, rsa-sha256) of
every request against the API keys registered with it, and has a JSON control API under
/_emulator/ for tests. See README.md.

    python3 oci_emulator.py --port 0 --port-file /tmp/port [--tls-cert C --tls-key K]
                            [--state-file S] [--config JSON] [--parent-pid PID]
"""
import argparse
import base64
import copy
import datetime
import email.utils
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

API = '/20160918'
ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789'
OCID_RE = re.compile(r'^ocid1\.([a-z0-9]+)\.([a-z0-9]+)\.([a-z0-9-]*)(\.[a-z0-9-]*)?\.([a-z0-9]+)$')
RETRY_TOKEN_RE = re.compile(r'^[\x21-\x7e]{1,64}$')
NOT_AUTHENTICATED = ('The required information to complete authentication was not provided or '
                     'was incorrect.')
NOT_FOUND = 'Authorization failed or requested resource not found.'
OUT_OF_CAPACITY = 'Out of host capacity.'
EMPTY_SHA = base64.b64encode(hashlib.sha256(b'').digest()).decode()

DEFAULT_CONFIG = {
    'region': 'us-ashburn-1',
    'region_key': 'iad',              # the region's short name in OCIDs
    'provisioning_delay': 0.3,        # instance PROVISIONING -> RUNNING (launch work request done)
    'terminate_delay': 0.3,           # instance TERMINATING -> TERMINATED
    'failure_delay': 0.3,             # accepted -> failed, for work-request capacity failures
    'reservation_create_delay': 0.3,  # capacity reservation CREATING -> ACTIVE
    'reservation_delete_delay': 0.3,  # capacity reservation DELETING -> DELETED
    'work_request_start_delay': 0.05,  # work request ACCEPTED -> IN_PROGRESS
    'terminated_retention': 3600,     # TERMINATED/DELETED resources stay listed this long
    'clock_skew': 300,                # a signed Date may differ from ours by this much (seconds)
    'clock_offset': 0,                # our clock runs this many seconds ahead of the host's
    'default_page_size': 100,         # list `limit` when none is given
    'max_page_size': 1000,
    'request_log_limit': 100000,
}

DEFAULT_CATALOGUE = {
    'availability_domains': ['Uocm:US-ASHBURN-AD-1', 'Uocm:US-ASHBURN-AD-2',
                             'Uocm:US-ASHBURN-AD-3'],
    # Flex: ocpus [min, max], memory per OCPU [min, max] GB, max memory, default GB per OCPU.
    # Fixed: ocpus and memory.
    'shapes': {
        'VM.Standard.E4.Flex': {'flex': True, 'ocpus': [1, 64], 'memory_per_ocpu': [1, 64],
                                'max_memory': 1024, 'default_memory_per_ocpu': 16,
                                'vcpus_per_ocpu': 2, 'processor': '2.55 GHz AMD EPYC 7J13'},
        'VM.Standard.E5.Flex': {'flex': True, 'ocpus': [1, 94], 'memory_per_ocpu': [1, 64],
                                'max_memory': 1049, 'default_memory_per_ocpu': 12,
                                'vcpus_per_ocpu': 2, 'processor': '2.4 GHz AMD EPYC 9J14'},
        'VM.Standard3.Flex': {'flex': True, 'ocpus': [1, 32], 'memory_per_ocpu': [1, 64],
                              'max_memory': 512, 'default_memory_per_ocpu': 16,
                              'vcpus_per_ocpu': 2, 'processor': '2.0 GHz Intel Xeon 8358'},
        'VM.Standard.A1.Flex': {'flex': True, 'ocpus': [1, 80], 'memory_per_ocpu': [1, 64],
                                'max_memory': 512, 'default_memory_per_ocpu': 6,
                                'vcpus_per_ocpu': 1, 'processor': '3.0 GHz Ampere Altra'},
        'VM.Optimized3.Flex': {'flex': True, 'ocpus': [1, 18], 'memory_per_ocpu': [1, 64],
                               'max_memory': 256, 'default_memory_per_ocpu': 14,
                               'vcpus_per_ocpu': 2, 'processor': '3.6 GHz Intel Xeon 6354'},
        'VM.Standard2.1': {'flex': False, 'ocpus': 1, 'memory': 15, 'vcpus_per_ocpu': 2},
        'VM.Standard2.2': {'flex': False, 'ocpus': 2, 'memory': 30, 'vcpus_per_ocpu': 2},
        'VM.Standard2.4': {'flex': False, 'ocpus': 4, 'memory': 60, 'vcpus_per_ocpu': 2},
        'VM.Standard.E2.1.Micro': {'flex': False, 'ocpus': 1, 'memory': 1, 'vcpus_per_ocpu': 2},
    },
    'images': [],        # image OCIDs that exist; empty: every well-formed image OCID does
    'subnets': [],       # the same for subnet OCIDs
    'compartments': [],  # the same for compartment OCIDs (a tenancy OCID is its root compartment)
}

# Top-level and nested field names of the request bodies, as the oci-core models have them.
LAUNCH_FIELDS = {
    'availabilityDomain', 'capacityReservationId', 'compartmentId', 'createVnicDetails',
    'dedicatedVmHostId', 'definedTags', 'securityAttributes', 'displayName', 'extendedMetadata',
    'faultDomain', 'clusterPlacementGroupId', 'freeformTags', 'computeClusterId',
    'hostnameLabel', 'imageId', 'ipxeScript', 'launchOptions', 'instanceOptions',
    'availabilityConfig', 'preemptibleInstanceConfig', 'metadata', 'agentConfig', 'shape',
    'shapeConfig', 'sourceDetails', 'subnetId', 'launchVolumeAttachments',
    'isPvEncryptionInTransitEnabled', 'platformConfig', 'placementConstraintDetails',
    'isAIEnterpriseEnabled', 'instanceConfigurationId', 'licensingConfigs',
}
SHAPE_CONFIG_FIELDS = {'ocpus', 'vcpus', 'memoryInGBs', 'baselineOcpuUtilization', 'nvmes',
                       'resourceManagement', 'localVolumeSizeInGBs'}
SOURCE_IMAGE_FIELDS = {'sourceType', 'imageId', 'bootVolumeSizeInGBs', 'kmsKeyId',
                       'bootVolumeVpusPerGB', 'instanceSourceImageFilterDetails'}
VNIC_FIELDS = {'assignIpv6Ip', 'assignPublicIp', 'assignPrivateDnsRecord', 'definedTags',
               'displayName', 'freeformTags', 'securityAttributes', 'hostnameLabel',
               'ipv6AddressIpv6SubnetCidrPairDetails', 'nsgIds', 'privateIp', 'privateIpId',
               'skipSourceDestCheck', 'subnetId', 'vlanId', 'subnetCidr'}
RESERVATION_FIELDS = {'compartmentId', 'definedTags', 'displayName', 'freeformTags',
                      'availabilityDomain', 'isDefaultReservation', 'instanceReservationConfigs'}
RESERVATION_CONFIG_FIELDS = {'instanceShape', 'instanceShapeConfig', 'faultDomain',
                             'clusterConfig', 'reservedCount', 'clusterPlacementGroupId'}
RESERVATION_SHAPE_FIELDS = {'ocpus', 'memoryInGBs', 'resourceManagement'}

# SHA-256's DigestInfo prefix (RFC 8017, EMSA-PKCS1-v1_5).
SHA256_DIGEST_INFO = bytes.fromhex('3031300d060960864801650304020105000420')
RSA_ENCRYPTION_OID = bytes.fromhex('06092a864886f70d010101')


class ApiError(Exception):
    """An OCI error answer: {"code", "message"}."""

    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}

    def body(self):
        return {'code': self.code, 'message': self.message}


def not_found():
    return ApiError(404, 'NotAuthorizedOrNotFound', NOT_FOUND)


def invalid(message):
    return ApiError(400, 'InvalidParameter', message)


def now():
    return time.time()


def qget(query, key, default=None):
    v = query.get(key)
    if v is None:
        return default
    return v[-1] if isinstance(v, list) else v


# --------------------------------------------------------------------------------------------
# RSA public keys and signatures, from DER, with nothing but integers


def _der_read(data, pos):
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7f
        length = int.from_bytes(data[pos:pos + n], 'big')
        pos += n
    return tag, data[pos:pos + length], pos + length


def _der_children(data):
    out, pos = [], 0
    while pos < len(data):
        tag, value, pos = _der_read(data, pos)
        out.append((tag, value))
    return out


def _der_length(n):
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, 'big')
    return bytes([0x80 | len(raw)]) + raw


def _der(tag, content):
    return bytes([tag]) + _der_length(len(content)) + content


def parse_public_key(pem):
    """(n, e, spki_der) of an RSA public key in PEM: SubjectPublicKeyInfo or PKCS#1."""
    m = re.search(r'-----BEGIN ([A-Z ]+)-----(.*?)-----END \1-----', pem, re.S)
    if not m:
        raise ValueError('not PEM')
    label, der = m.group(1), base64.b64decode(''.join(m.group(2).split()))
    if label == 'PUBLIC KEY':
        spki = der
        _, seq, _ = _der_read(der, 0)
        (alg_tag, alg), (bits_tag, bits) = _der_children(seq)[:2]
        if not alg.startswith(RSA_ENCRYPTION_OID) or bits_tag != 0x03:
            raise ValueError('not an RSA key')
        pkcs1 = bits[1:]
    elif label == 'RSA PUBLIC KEY':
        pkcs1 = der
        spki = _der(0x30, _der(0x30, RSA_ENCRYPTION_OID + b'\x05\x00') +
                    _der(0x03, b'\x00' + pkcs1))
    else:
        raise ValueError('a %s, not a public key' % label.lower())
    _, seq, _ = _der_read(pkcs1, 0)
    (_, n), (_, e) = _der_children(seq)[:2]
    return int.from_bytes(n, 'big'), int.from_bytes(e, 'big'), spki


def key_fingerprint(spki_der):
    digest = hashlib.md5(spki_der).hexdigest()
    return ':'.join(digest[i:i + 2] for i in range(0, 32, 2))


def rsa_verify_sha256(n, e, message, signature):
    k = (n.bit_length() + 7) // 8
    if len(signature) != k:
        return False
    m = pow(int.from_bytes(signature, 'big'), e, n)
    em = m.to_bytes(k, 'big')
    t = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return em == b'\x00\x01' + b'\xff' * (k - len(t) - 3) + b'\x00' + t


def parse_signature_header(value):
    """The parameters of 'Signature version="1",headers="...",keyId=...'."""
    if not value or not value.startswith('Signature '):
        raise ValueError('the Authorization header is not a Signature')
    params = {}
    for m in re.finditer(r'([A-Za-z]+)="([^"]*)"', value[len('Signature '):]):
        params[m.group(1)] = m.group(2)
    return params


def http_date(t):
    return email.utils.formatdate(t, usegmt=True)


# --------------------------------------------------------------------------------------------
# The emulator's state


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
            with open(state_file) as f:
                self.s.update(json.load(f))
            heapq.heapify(self.s['events'])

    def reset(self, config=None):
        with self.lock:
            cfg = copy.deepcopy(DEFAULT_CONFIG)
            if config:
                cfg.update(config)
            self.s = {
                'config': cfg,
                'catalogue': copy.deepcopy(DEFAULT_CATALOGUE),
                'keys': {},            # keyId -> {'pem', 'tenancy', 'user', 'fingerprint'}
                'instances': {},       # id -> Instance
                'vnic_attachments': {},  # id -> VnicAttachment
                'vnics': {},           # id -> Vnic
                'reservations': {},    # id -> ComputeCapacityReservation
                'work_requests': {},   # id -> WorkRequest (+ 'errors', 'logs')
                'retry_tokens': {},    # token -> {'request': fingerprint, 'answer': {...}}
                'capacity': {},        # AD -> {'remaining': int, 'mode': 'sync'|'work_request'}
                'limits': [],          # [{'metric', 'limit', 'code'}]
                'faults': [],
                'events': [],          # heap of [t, seq, event]
                'counters': {'insert_calls': {}, 'instances_created': {}, 'delete_calls': {},
                             'reservation_insert_calls': {}, 'reservations_created': {},
                             'reservation_delete_calls': {},
                             'instances_launched_by_tag': {}, 'methods': {},
                             'requests_total': 0, 'faults_injected': 0, 'auth_failures': 0,
                             'dedup_hits': 0, 'retry_token_conflicts': 0},
                'ips': {'next_private': 2, 'public_in_use': []},
                'seq': 0,
            }
            self.log = []
            self.log_seq = 0
            self._dirty = True

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
        """Our idea of the time: the host's plus clock_offset."""
        return now() + float(self.cfg['clock_offset'])

    def ts(self, t=None):
        t = self.clock() if t is None else t + float(self.cfg['clock_offset'])
        d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
        return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%03dZ' % (d.microsecond // 1000)

    def ocid(self, kind, regional=True):
        self.s['seq'] += 1
        unique = 'a' + ''.join(random.choice(ALPHABET) for _ in range(59))
        return 'ocid1.%s.oc1.%s.%s' % (kind, self.cfg['region_key'] if regional else '', unique)

    def count(self, counter, key, n=1):
        c = self.s['counters'][counter]
        c[key] = c.get(key, 0) + n

    # ---- scheduled transitions -----------------------------------------------------------
    def schedule(self, delay, event):
        self.s['seq'] += 1
        heapq.heappush(self.s['events'], [now() + max(0.0, float(delay)), self.s['seq'], event])

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

    def _apply_event(self, ev):
        kind = ev['kind']
        if kind == 'wr_started':
            wr = self.s['work_requests'].get(ev['id'])
            if wr and wr['status'] == 'ACCEPTED':
                wr['status'] = 'IN_PROGRESS'
                wr['timeStarted'] = self.ts()
                wr['percentComplete'] = 10.0
        elif kind == 'instance_running':
            inst = self.s['instances'].get(ev['id'])
            if inst and inst['lifecycleState'] == 'PROVISIONING':
                inst['lifecycleState'] = 'RUNNING'
                for att in self._attachments_of(inst['id']):
                    att['lifecycleState'] = 'ATTACHED'
                    vnic = self.s['vnics'][att['vnicId']]
                    vnic['lifecycleState'] = 'AVAILABLE'
                    if vnic.pop('_wants_public_ip', False):
                        vnic['publicIp'] = self._alloc_public_ip()
                self._finish_wr(ev.get('wr'), 'SUCCEEDED')
        elif kind == 'instance_failed':
            inst = self.s['instances'].get(ev['id'])
            if inst and inst['lifecycleState'] == 'PROVISIONING':
                self._instance_gone(inst)
                self._finish_wr(ev.get('wr'), 'FAILED', [('InternalError', ev['message'])])
        elif kind == 'instance_terminated':
            inst = self.s['instances'].get(ev['id'])
            if inst and inst['lifecycleState'] == 'TERMINATING':
                self._instance_gone(inst)
                self._finish_wr(ev.get('wr'), 'SUCCEEDED')
        elif kind == 'reservation_active':
            r = self.s['reservations'].get(ev['id'])
            if r and r['lifecycleState'] == 'CREATING':
                r['lifecycleState'] = 'ACTIVE'
                r['timeUpdated'] = self.ts()
                self._finish_wr(ev.get('wr'), 'SUCCEEDED')
        elif kind == 'reservation_failed':
            r = self.s['reservations'].get(ev['id'])
            if r and r['lifecycleState'] == 'CREATING':
                self._reservation_gone(r)
                self._finish_wr(ev.get('wr'), 'FAILED', [('InternalError', ev['message'])])
        elif kind == 'reservation_deleted':
            r = self.s['reservations'].get(ev['id'])
            if r and r['lifecycleState'] == 'DELETING':
                self._reservation_gone(r)
                self._finish_wr(ev.get('wr'), 'SUCCEEDED')
        elif kind == 'purge':
            # TERMINATED/DELETED resources leave the listings after terminated_retention.
            self.s['instances'].pop(ev['id'], None)
            self.s['reservations'].pop(ev['id'], None)
            for att_id in [a['id'] for a in self.s['vnic_attachments'].values()
                           if a['instanceId'] == ev['id']]:
                att = self.s['vnic_attachments'].pop(att_id)
                self.s['vnics'].pop(att.get('vnicId'), None)

    def _instance_gone(self, inst):
        inst['lifecycleState'] = 'TERMINATED'
        for att in self._attachments_of(inst['id']):
            att['lifecycleState'] = 'DETACHED'
            vnic = self.s['vnics'].get(att['vnicId'])
            if vnic:
                vnic['lifecycleState'] = 'TERMINATED'
                self._free_public_ip(vnic.get('publicIp'))
        self._recount_reservation(inst.get('capacityReservationId'))
        self.schedule(self.cfg['terminated_retention'], {'kind': 'purge', 'id': inst['id']})

    def _reservation_gone(self, r):
        r['lifecycleState'] = 'DELETED'
        r['timeUpdated'] = self.ts()
        ad = r['availabilityDomain']
        # What a reservation held goes back to its availability domain.
        cap = self.s['capacity'].get(ad)
        if cap is not None and r.pop('_held', 0):
            cap['remaining'] += r['reservedInstanceCount']
        self.schedule(self.cfg['terminated_retention'], {'kind': 'purge', 'id': r['id']})

    # ---- work requests -------------------------------------------------------------------
    def new_work_request(self, operation, compartment, entity_type, entity_id, uri_kind, action):
        wr_id = self.ocid('coreservicesworkrequest')
        self.s['work_requests'][wr_id] = {
            'id': wr_id, 'operationType': operation, 'status': 'ACCEPTED',
            'compartmentId': compartment, 'percentComplete': 0.0,
            'resources': [{'entityType': entity_type, 'actionType': action,
                           'identifier': entity_id,
                           'entityUri': '%s/%s/%s' % (API, uri_kind, entity_id)}],
            'timeAccepted': self.ts(), 'errors': [], 'logs': [
                {'message': '%s accepted' % operation, 'timestamp': self.ts()}],
        }
        self.schedule(self.cfg['work_request_start_delay'], {'kind': 'wr_started', 'id': wr_id})
        return wr_id

    def _finish_wr(self, wr_id, status, errors=()):
        wr = self.s['work_requests'].get(wr_id) if wr_id else None
        if not wr or wr['status'] in ('SUCCEEDED', 'FAILED', 'CANCELED'):
            return
        wr['status'] = status
        wr.setdefault('timeStarted', self.ts())
        wr['timeFinished'] = self.ts()
        wr['percentComplete'] = 100.0
        for code, message in errors:
            wr['errors'].append({'code': code, 'message': message, 'timestamp': self.ts()})
        wr['logs'].append({'message': '%s %s' % (wr['operationType'], status.lower()),
                           'timestamp': self.ts()})

    def public_work_request(self, wr):
        return {k: v for k, v in wr.items() if k not in ('errors', 'logs')}

    # ---- addresses -----------------------------------------------------------------------
    def _alloc_public_ip(self):
        used = set(self.s['ips']['public_in_use'])
        for host in ipaddress.ip_network('203.0.113.0/24').hosts():
            if str(host) not in used:
                self.s['ips']['public_in_use'].append(str(host))
                return str(host)
        return None  # none left: the VNIC runs without one

    def _free_public_ip(self, ip):
        if ip in self.s['ips']['public_in_use']:
            self.s['ips']['public_in_use'].remove(ip)

    def _alloc_private_ip(self):
        n = self.s['ips']['next_private']
        self.s['ips']['next_private'] += 1
        return str(ipaddress.ip_address('10.0.0.0') + n)

    # ---- signatures ----------------------------------------------------------------------
    def authenticate(self, method, target, headers, body):
        """The keyId of a correctly signed request; ApiError 401 otherwise. The reason goes to
        the request log only, as OCI tells a client nothing more than NotAuthenticated."""
        def refuse(why):
            with self.lock:
                self.s['counters']['auth_failures'] += 1
            Emulator._tl.auth_error = why
            return ApiError(401, 'NotAuthenticated', NOT_AUTHENTICATED,
                            {'WWW-Authenticate': 'Signature headers="date (request-target) '
                                                 'host",realm="IDCS"'})
        try:
            params = parse_signature_header(headers.get('Authorization'))
        except ValueError as exc:
            raise refuse(str(exc))
        if params.get('version') != '1':
            raise refuse('version="1" is missing')
        if params.get('algorithm', 'rsa-sha256') != 'rsa-sha256':
            raise refuse('algorithm %s is not rsa-sha256' % params.get('algorithm'))
        key_id = params.get('keyId', '')
        signed = params.get('headers', 'date').lower().split()
        if not key_id or not params.get('signature'):
            raise refuse('keyId or signature is missing')
        required = {'(request-target)', 'host'}
        if method in ('POST', 'PUT', 'PATCH'):
            required |= {'content-length', 'content-type', 'x-content-sha256'}
        missing = sorted(required - set(signed))
        if missing:
            raise refuse('these headers are not signed: ' + ' '.join(missing))
        if 'date' not in signed and 'x-date' not in signed:
            raise refuse('neither date nor x-date is signed')
        lines = []
        for name in signed:
            if name == '(request-target)':
                lines.append('(request-target): %s %s' % (method.lower(), target))
                continue
            value = headers.get(name)
            if value is None:
                raise refuse('the signed header %s is not in the request' % name)
            lines.append('%s: %s' % (name, value))
        date_text = headers.get('x-date') if 'x-date' in signed else headers.get('date')
        try:
            date = email.utils.parsedate_to_datetime(date_text)
        except (TypeError, ValueError):
            date = None
        if date is None or date.tzinfo is None:
            raise refuse('the signed date is not an HTTP date')
        skew = abs(date.timestamp() - self.clock())
        if skew > float(self.cfg['clock_skew']):
            raise refuse('the signed date is %d s away from our clock' % skew)
        if method in ('POST', 'PUT', 'PATCH'):
            if headers.get('x-content-sha256') != base64.b64encode(
                    hashlib.sha256(body).digest()).decode():
                raise refuse('x-content-sha256 is not the SHA-256 of the body')
            if headers.get('content-length') != str(len(body)):
                raise refuse('content-length is not the length of the body')
        with self.lock:
            key = self.s['keys'].get(key_id)
        if not key:
            raise refuse('no API key is registered as %s' % key_id)
        n, e = int(key['n'], 16), int(key['e'], 16)
        try:
            sig = base64.b64decode(params['signature'], validate=True)
        except ValueError:
            raise refuse('the signature is not base64')
        if not rsa_verify_sha256(n, e, '\n'.join(lines).encode(), sig):
            raise refuse('the signature does not verify with the key of %s' % key_id)
        return key_id

    def register_key(self, data):
        pem = data.get('public_key_pem')
        tenancy, user = data.get('tenancy'), data.get('user')
        if not pem or not tenancy or not user:
            raise ValueError('tenancy, user and public_key_pem are required')
        n, e, spki = parse_public_key(pem)
        fp = key_fingerprint(spki)
        if data.get('fingerprint') and data['fingerprint'].lower() != fp:
            raise ValueError('the fingerprint %s is not the key\'s (%s)'
                             % (data['fingerprint'], fp))
        key_id = '%s/%s/%s' % (tenancy, user, fp)
        self.s['keys'][key_id] = {'pem': pem, 'tenancy': tenancy, 'user': user,
                                  'fingerprint': fp, 'n': '%x' % n, 'e': '%x' % e}
        return {'keyId': key_id, 'fingerprint': fp}

    def make_api_key(self, data):
        """A new RSA key pair (by openssl), its public half registered; the private PEM back."""
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'key.pem')
            subprocess.run(['openssl', 'genpkey', '-algorithm', 'RSA',
                            '-pkeyopt', 'rsa_keygen_bits:%d' % int(data.get('bits', 2048)),
                            '-out', path], check=True, capture_output=True)
            public = subprocess.run(['openssl', 'pkey', '-in', path, '-pubout'], check=True,
                                    capture_output=True, text=True).stdout
            with open(path) as f:
                private = f.read()
        out = self.register_key(dict(data, public_key_pem=public))
        out.update({'private_key_pem': private, 'public_key_pem': public})
        return out

    # ---- faults --------------------------------------------------------------------------
    def take_faults(self, method, path, phase):
        fired = []
        with self.lock:
            t = now()
            for f in list(self.s['faults']):
                if f.get('when', 'before') != phase:
                    continue
                if f.get('method') and f['method'].upper() != method:
                    continue
                if not re.search(f.get('path_regex') or '^' + API + '/', path):
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
    def log_request(self, method, path, query, extra):
        with self.lock:
            self.log_seq += 1
            e = {'seq': self.log_seq, 't': now(), 'method': method, 'path': path,
                 'query': query, 'status': None}
            e.update(extra)
            e['time'] = self.ts(e['t'])
            self.log.append(e)
            limit = self.cfg['request_log_limit']
            if len(self.log) > limit:
                del self.log[:len(self.log) - limit]
            if path.startswith(API + '/'):
                self.s['counters']['requests_total'] += 1
            return e

    # ---- the API -------------------------------------------------------------------------
    def api(self, method, path, query, body, headers):
        """path: after /20160918. Returns (status, obj or None, extra headers)."""
        self.advance()
        segs = [urllib.parse.unquote(s) for s in path.strip('/').split('/')]
        n, M = len(segs), method
        route = None

        def routed(name):
            nonlocal route
            route = name
            Emulator._tl.route = name
            with self.lock:
                self.count('methods', name)

        coll = segs[0] if segs else ''
        if coll == 'instances':
            if n == 1 and M == 'POST':
                routed('LaunchInstance')
                self.count_call('insert_calls', body)
                return self.mutate('LaunchInstance', body, headers,
                                   lambda d: self.launch_instance(d))
            if n == 1 and M == 'GET':
                routed('ListInstances')
                return self.list_instances(query)
            if n == 2 and M == 'GET':
                routed('GetInstance')
                return self.get_instance(segs[1])
            if n == 2 and M == 'DELETE':
                routed('TerminateInstance')
                return self.mutate('TerminateInstance', path.encode() + b'?' +
                                   urllib.parse.urlencode(sorted(query.items()), True).encode(),
                                   headers, lambda _: self.terminate_instance(segs[1], query))
        elif coll == 'vnicAttachments':
            if n == 1 and M == 'GET':
                routed('ListVnicAttachments')
                return self.list_vnic_attachments(query)
            if n == 2 and M == 'GET':
                routed('GetVnicAttachment')
                return self.get_simple('vnic_attachments', segs[1])
        elif coll == 'vnics':
            if n == 2 and M == 'GET':
                routed('GetVnic')
                return self.get_simple('vnics', segs[1], strip=True)
        elif coll == 'computeCapacityReservations':
            if n == 1 and M == 'POST':
                routed('CreateComputeCapacityReservation')
                self.count_call('reservation_insert_calls', body)
                return self.mutate('CreateComputeCapacityReservation', body, headers,
                                   lambda d: self.create_reservation(d))
            if n == 1 and M == 'GET':
                routed('ListComputeCapacityReservations')
                return self.list_reservations(query)
            if n == 2 and M == 'GET':
                routed('GetComputeCapacityReservation')
                return self.get_reservation(segs[1])
            if n == 2 and M == 'DELETE':
                routed('DeleteComputeCapacityReservation')
                return self.mutate('DeleteComputeCapacityReservation', path.encode(), headers,
                                   lambda _: self.delete_reservation(segs[1], headers))
            if n == 3 and segs[2] == 'instances' and M == 'GET':
                routed('ListComputeCapacityReservationInstances')
                return self.list_reservation_instances(segs[1], query)
        elif coll == 'workRequests':
            if n == 1 and M == 'GET':
                routed('ListWorkRequests')
                return self.list_work_requests(query)
            if n == 2 and M == 'GET':
                routed('GetWorkRequest')
                return self.get_work_request(segs[1])
            if n == 3 and segs[2] in ('errors', 'logs') and M == 'GET':
                routed('ListWorkRequestErrors' if segs[2] == 'errors' else 'ListWorkRequestLogs')
                return self.work_request_items(segs[1], segs[2], query)
        raise ApiError(404, 'NotFound', 'There is no operation supported at operation path %s '
                       'for the method %s' % (API + path, method))

    def count_call(self, counter, body):
        """Counts a create call under its displayName, whatever becomes of it."""
        name = ''
        try:
            d = json.loads(body.decode('utf-8')) if body else None
            if isinstance(d, dict) and isinstance(d.get('displayName'), str):
                name = d['displayName']
            if isinstance(d, dict) and isinstance(d.get('availabilityDomain'), str):
                Emulator._tl.zone = d['availabilityDomain']  # for the request log
        except (ValueError, UnicodeDecodeError):
            pass
        with self.lock:
            self.count(counter, name)

    def mutate(self, operation, request_bytes, headers, action):
        """One mutation, under its opc-retry-token if it has one: a repeat of the same request
        answers what the first one answered (the resource as it is now) and does nothing; the
        same token on another request is a conflict."""
        token = headers.get('opc-retry-token')
        if token is not None and not RETRY_TOKEN_RE.match(token):
            raise invalid('opc-retry-token must be 1 to 64 printable characters')
        fp = hashlib.sha256(operation.encode() + b'\0' + request_bytes).hexdigest()
        with self.lock:
            if token is not None:
                seen = self.s['retry_tokens'].get(token)
                if seen:
                    if seen['request'] != fp:
                        self.s['counters']['retry_token_conflicts'] += 1
                        raise ApiError(409, 'InvalidatedRetryToken',
                                       'The retry token was used for a different request.')
                    self.s['counters']['dedup_hits'] += 1
                    Emulator._tl.replayed = True
                    return self.replay(seen['answer'])
            data = None
            if operation in ('LaunchInstance', 'CreateComputeCapacityReservation'):
                data = self.parse_body(request_bytes)
            status, obj, hdrs, answer = action(data)
            if token is not None:
                self.s['retry_tokens'][token] = {'request': fp, 'answer': answer,
                                                 't': now()}
            self._dirty = True
            return status, obj, hdrs

    def replay(self, answer):
        kind = answer['kind']
        hdrs = {'opc-work-request-id': answer['wr']} if answer.get('wr') else {}
        if kind == 'instance':
            inst = self.s['instances'].get(answer['id'])
            if not inst:
                raise ApiError(409, 'InvalidatedRetryToken', 'The retry token was invalidated: '
                               'the resource it made is gone.')
            hdrs['etag'] = self.etag(inst)
            return 200, self.strip(inst), hdrs
        if kind == 'reservation':
            r = self.s['reservations'].get(answer['id'])
            if not r:
                raise ApiError(409, 'InvalidatedRetryToken', 'The retry token was invalidated: '
                               'the resource it made is gone.')
            hdrs['etag'] = self.etag(r)
            return 200, self.public_reservation(r), hdrs
        return answer['status'], None, hdrs

    def parse_body(self, raw):
        try:
            data = json.loads(raw.decode('utf-8')) if raw else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, 'CannotParseRequest', 'Unable to parse the request body: %s' % exc)
        if not isinstance(data, dict):
            raise ApiError(400, 'CannotParseRequest', 'The request body must be a JSON object.')
        return data

    @staticmethod
    def strip(resource):
        return {k: v for k, v in resource.items() if not k.startswith('_')}

    @staticmethod
    def etag(resource):
        return hashlib.md5(json.dumps(Emulator.strip(resource), sort_keys=True)
                           .encode()).hexdigest()

    # ---- validation -----------------------------------------------------------------------
    def check_fields(self, obj, allowed, where):
        if not isinstance(obj, dict):
            raise ApiError(400, 'CannotParseRequest', '%s must be an object' % where)
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise ApiError(400, 'CannotParseRequest', 'Unrecognized field "%s" in %s'
                           % (unknown[0], where))

    def check_ocid(self, value, kind, field, catalogue=None, in_body=True):
        if not isinstance(value, str) or not value:
            raise ApiError(400, 'MissingParameter', '%s is required.' % field)
        m = OCID_RE.match(value)
        if not m or m.group(1) != kind:
            raise invalid('%s is not a valid %s OCID: %s' % (field, kind, value))
        known = self.s['catalogue'].get(catalogue) if catalogue else None
        if known:
            ok = value in known or (catalogue == 'compartments' and any(
                k['tenancy'] == value for k in self.s['keys'].values()))
            if not ok:
                if in_body:
                    raise ApiError(400, 'RelatedResourceNotAuthorizedOrNotFound',
                                   '%s %s: %s' % (field, value, NOT_FOUND))
                raise not_found()

    def check_compartment(self, value, field='compartmentId', in_body=True):
        if isinstance(value, str) and value.startswith('ocid1.tenancy.'):
            self.check_ocid(value, 'tenancy', field, None, in_body)
            return
        self.check_ocid(value, 'compartment', field, 'compartments', in_body)

    def check_ad(self, ad):
        if not isinstance(ad, str) or not ad:
            raise ApiError(400, 'MissingParameter', 'availabilityDomain is required.')
        if ad not in self.s['catalogue']['availability_domains']:
            raise invalid('Invalid availabilityDomain: %s' % ad)

    def check_tags(self, tags, where='freeformTags'):
        if tags is None:
            return {}
        if not isinstance(tags, dict):
            raise invalid('%s must be an object of strings' % where)
        for k, v in tags.items():
            if not isinstance(v, str):
                raise invalid('%s: the value of %s must be a string' % (where, k))
            if not k or len(k) > 100 or re.search(r'[.\s]', k):
                raise invalid('%s: the key "%s" must be 1 to 100 characters without periods '
                              'or spaces' % (where, k))
            if len(v) > 256:
                raise invalid('%s: the value of %s is longer than 256 characters' % (where, k))
        if len(tags) > 64:
            raise invalid('%s: at most 64 tags' % where)
        return dict(tags)

    def resolve_shape(self, shape, config, where):
        """The shape's full configuration {'ocpus', 'memoryInGBs', 'vcpus', ...}."""
        spec = self.s['catalogue']['shapes'].get(shape) if isinstance(shape, str) else None
        if not spec:
            raise invalid('Invalid shape: %s' % shape)
        if not spec['flex']:
            if config:
                raise invalid('%s is not a flexible shape: %s cannot be given' % (shape, where))
            ocpus, memory = spec['ocpus'], spec['memory']
        else:
            if not config or config.get('ocpus') is None:
                raise invalid('%s is a flexible shape: %s.ocpus is required' % (shape, where))
            ocpus = config['ocpus']
            if isinstance(ocpus, bool) or not isinstance(ocpus, (int, float)):
                raise invalid('%s.ocpus must be a number' % where)
            lo, hi = spec['ocpus']
            if not lo <= ocpus <= hi:
                raise invalid('%s.ocpus %s is out of range for %s: %s to %s'
                              % (where, ocpus, shape, lo, hi))
            memory = config.get('memoryInGBs')
            if memory is None:
                memory = min(ocpus * spec['default_memory_per_ocpu'], spec['max_memory'])
            if isinstance(memory, bool) or not isinstance(memory, (int, float)):
                raise invalid('%s.memoryInGBs must be a number' % where)
            mlo, mhi = spec['memory_per_ocpu']
            if not (mlo * ocpus <= memory <= min(mhi * ocpus, spec['max_memory'])):
                raise invalid('%s.memoryInGBs %s is out of range for %s with %s OCPUs: %s to %s'
                              % (where, memory, shape, ocpus, mlo * ocpus,
                                 min(mhi * ocpus, spec['max_memory'])))
        return {'ocpus': float(ocpus), 'memoryInGBs': float(memory),
                'vcpus': int(ocpus * spec.get('vcpus_per_ocpu', 2)),
                'processorDescription': spec.get('processor', ''),
                'networkingBandwidthInGbps': float(ocpus), 'maxVnicAttachments': 2,
                'gpus': 0, 'localDisks': 0}

    def check_limits(self, extra_instances=0, extra_ocpus=0.0):
        live = [i for i in self.s['instances'].values()
                if i['lifecycleState'] not in ('TERMINATED',)]
        for lim in self.s['limits']:
            if lim['metric'] == 'instance-count':
                used, want = len(live), extra_instances
            else:  # core-count
                used = sum(i['shapeConfig']['ocpus'] for i in live)
                want = extra_ocpus
            if used + want > lim['limit']:
                if lim['code'] == 'QuotaExceeded':
                    raise ApiError(400, 'QuotaExceeded', 'Quota exceeded: %s (limit %s, used %s)'
                                   % (lim['metric'], lim['limit'], used))
                raise ApiError(400, 'LimitExceeded', 'The following service limits were '
                               'exceeded: %s. Request a service limit increase from the service '
                               'limits page in the console.' % lim['metric'])

    def take_capacity(self, ad, units):
        """None if the AD has room (taken), else the mode of the capacity failure."""
        cap = self.s['capacity'].get(ad)
        if cap is None:
            return None
        if cap['remaining'] >= units:
            cap['remaining'] -= units
            return None
        return cap.get('mode', 'sync')

    # ---- instances -----------------------------------------------------------------------
    def launch_instance(self, d):
        self.check_fields(d, LAUNCH_FIELDS, 'LaunchInstanceDetails')
        self.check_compartment(d.get('compartmentId'))
        self.check_ad(d.get('availabilityDomain'))
        ad = d['availabilityDomain']
        name = d.get('displayName')
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise invalid('displayName must be a string of at most 255 characters')
        shape_config = d.get('shapeConfig')
        if shape_config is not None:
            self.check_fields(shape_config, SHAPE_CONFIG_FIELDS, 'shapeConfig')
        config = self.resolve_shape(d.get('shape'), shape_config, 'shapeConfig')
        src = d.get('sourceDetails')
        if src is None and d.get('imageId'):
            src = {'sourceType': 'image', 'imageId': d['imageId']}
        if src is None:
            raise ApiError(400, 'MissingParameter', 'sourceDetails is required.')
        if not isinstance(src, dict) or src.get('sourceType') != 'image':
            raise invalid('sourceDetails.sourceType must be image (boot volumes are not '
                          'emulated)')
        self.check_fields(src, SOURCE_IMAGE_FIELDS, 'sourceDetails')
        self.check_ocid(src.get('imageId'), 'image', 'sourceDetails.imageId', 'images')
        size = src.get('bootVolumeSizeInGBs')
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or
                                 not 50 <= size <= 32768):
            raise invalid('sourceDetails.bootVolumeSizeInGBs must be 50 to 32768')
        vnic = d.get('createVnicDetails') or {}
        self.check_fields(vnic, VNIC_FIELDS, 'createVnicDetails')
        subnet = vnic.get('subnetId') or d.get('subnetId')
        if not subnet:
            raise ApiError(400, 'MissingParameter', 'createVnicDetails.subnetId is required.')
        self.check_ocid(subnet, 'subnet', 'createVnicDetails.subnetId', 'subnets')
        assign_public = vnic.get('assignPublicIp', True)
        if not isinstance(assign_public, bool):
            raise invalid('createVnicDetails.assignPublicIp must be a boolean')
        metadata = d.get('metadata') or {}
        if not isinstance(metadata, dict) or any(not isinstance(v, str)
                                                 for v in metadata.values()):
            raise invalid('metadata must be an object of strings')
        if len(json.dumps(metadata)) > 32000:
            raise invalid('metadata is larger than 32,000 bytes')
        if 'user_data' in metadata:
            try:
                base64.b64decode(metadata['user_data'], validate=True)
            except ValueError:
                raise invalid('metadata.user_data must be base64')
        tags = self.check_tags(d.get('freeformTags'))
        reservation_id = d.get('capacityReservationId')
        with self.lock:
            reservation = None
            if reservation_id:
                self.check_ocid(reservation_id, 'capacityreservation', 'capacityReservationId')
                reservation = self.s['reservations'].get(reservation_id)
                if (not reservation or reservation['lifecycleState'] == 'DELETED' or
                        reservation['compartmentId'] != d['compartmentId']):
                    raise ApiError(400, 'RelatedResourceNotAuthorizedOrNotFound',
                                   'capacityReservationId %s: %s' % (reservation_id, NOT_FOUND))
                if reservation['availabilityDomain'] != ad:
                    raise invalid('The capacity reservation %s is in %s, not in %s'
                                  % (reservation_id, reservation['availabilityDomain'], ad))
                if reservation['lifecycleState'] != 'ACTIVE':
                    raise ApiError(409, 'IncorrectState', 'The capacity reservation %s is %s, '
                                   'not ACTIVE' % (reservation_id, reservation['lifecycleState']))
                slot = self._reservation_slot(reservation, d['shape'], config)
                if slot is None:
                    raise invalid('The capacity reservation %s has no configuration for shape %s '
                                  'with %s OCPUs and %s GB' % (reservation_id, d['shape'],
                                                               config['ocpus'],
                                                               config['memoryInGBs']))
                if slot['usedCount'] >= slot['reservedCount']:
                    # What OCI answers, as far as we know, when a reservation is full.
                    raise ApiError(500, 'InternalError', OUT_OF_CAPACITY)
            self.check_limits(1, config['ocpus'])
            failure = None if reservation else self.take_capacity(ad, 1)
            if failure == 'sync':
                raise ApiError(500, 'InternalError', OUT_OF_CAPACITY)
            iid = self.ocid('instance')
            t = self.ts()
            inst = {
                'id': iid, 'compartmentId': d['compartmentId'], 'availabilityDomain': ad,
                'displayName': name or 'instance%s' % time.strftime('%Y%m%d%H%M%S',
                                                                    time.gmtime()),
                'shape': d['shape'], 'shapeConfig': config,
                'sourceDetails': {'sourceType': 'image', 'imageId': src['imageId'],
                                  'bootVolumeSizeInGBs': size, 'bootVolumeVpusPerGB': None,
                                  'kmsKeyId': None},
                'imageId': src['imageId'], 'metadata': metadata, 'extendedMetadata': {},
                'freeformTags': tags, 'definedTags': {}, 'systemTags': {},
                'lifecycleState': 'PROVISIONING', 'timeCreated': t,
                'region': self.cfg['region_key'],
                'faultDomain': 'FAULT-DOMAIN-%d' % random.randint(1, 3),
                'capacityReservationId': reservation_id or None,
                'dedicatedVmHostId': None, 'launchMode': 'PARAVIRTUALIZED',
                'launchOptions': {'bootVolumeType': 'PARAVIRTUALIZED', 'firmware': 'UEFI_64',
                                  'networkType': 'PARAVIRTUALIZED',
                                  'remoteDataVolumeType': 'PARAVIRTUALIZED',
                                  'isPvEncryptionInTransitEnabled': False,
                                  'isConsistentVolumeNamingEnabled': True},
                'agentConfig': {'isMonitoringDisabled': False, 'isManagementDisabled': False,
                                'areAllPluginsDisabled': False, 'pluginsConfig': None},
                'availabilityConfig': {'recoveryAction': 'RESTORE_INSTANCE',
                                       'isLiveMigrationPreferred': None},
                'instanceOptions': {'areLegacyImdsEndpointsDisabled': False},
                'ipxeScript': None, 'platformConfig': None, 'preemptibleInstanceConfig': None,
                'isCrossNumaNode': False, 'timeMaintenanceRebootDue': None,
            }
            self.s['instances'][iid] = inst
            self._attach_primary_vnic(inst, subnet, vnic, assign_public)
            self.count('instances_created', inst['displayName'])
            if 'cloudbrain-instance' in tags:
                self.count('instances_launched_by_tag', tags['cloudbrain-instance'])
            if reservation:
                self._recount_reservation(reservation_id)
            wr = self.new_work_request('LaunchInstance', d['compartmentId'], 'instance', iid,
                                       'instances', 'CREATED')
            if failure == 'work_request':
                self.schedule(self.cfg['failure_delay'], {'kind': 'instance_failed', 'id': iid,
                                                          'wr': wr, 'message': OUT_OF_CAPACITY})
            else:
                self.schedule(self.cfg['provisioning_delay'], {'kind': 'instance_running',
                                                               'id': iid, 'wr': wr})
            return 200, self.strip(inst), {'opc-work-request-id': wr, 'etag': self.etag(inst)}, \
                {'kind': 'instance', 'id': iid, 'wr': wr}

    def _attach_primary_vnic(self, inst, subnet, details, assign_public):
        vnic_id = self.ocid('vnic')
        att_id = self.ocid('vnicattachment')
        t = inst['timeCreated']
        self.s['vnics'][vnic_id] = {
            'id': vnic_id, 'availabilityDomain': inst['availabilityDomain'],
            'compartmentId': inst['compartmentId'], 'displayName': inst['displayName'],
            'hostnameLabel': details.get('hostnameLabel'), 'isPrimary': True,
            'lifecycleState': 'PROVISIONING',
            'macAddress': '02:00:17:%02X:%02X:%02X' % tuple(random.randrange(256)
                                                            for _ in range(3)),
            'privateIp': self._alloc_private_ip(), 'publicIp': None, 'subnetId': subnet,
            'skipSourceDestCheck': False, 'nsgIds': [], 'ipv6Addresses': [],
            'freeformTags': {}, 'definedTags': {}, 'timeCreated': t,
            '_wants_public_ip': bool(assign_public),
        }
        self.s['vnic_attachments'][att_id] = {
            'id': att_id, 'availabilityDomain': inst['availabilityDomain'],
            'compartmentId': inst['compartmentId'], 'displayName': None,
            'instanceId': inst['id'], 'lifecycleState': 'ATTACHING', 'nicIndex': 0,
            'subnetId': subnet, 'timeCreated': t, 'vlanId': None, 'vlanTag': 2048,
            'vnicId': vnic_id,
        }

    def _attachments_of(self, instance_id):
        return [a for a in self.s['vnic_attachments'].values() if a['instanceId'] == instance_id]

    def get_instance(self, iid):
        with self.lock:
            inst = self.s['instances'].get(iid)
            if not inst:
                raise not_found()
            return 200, self.strip(inst), {'etag': self.etag(inst)}

    def terminate_instance(self, iid, query):
        pbv = qget(query, 'preserveBootVolume')
        if pbv not in (None, 'true', 'false'):
            raise invalid('preserveBootVolume must be true or false')
        inst = self.s['instances'].get(iid)
        if not inst:
            raise not_found()
        self.count('delete_calls', inst['displayName'])
        if inst['lifecycleState'] in ('TERMINATING', 'TERMINATED'):
            return 204, None, {}, {'kind': 'none', 'status': 204}
        inst['lifecycleState'] = 'TERMINATING'
        inst['_preserve_boot_volume'] = pbv == 'true'
        for att in self._attachments_of(iid):
            att['lifecycleState'] = 'DETACHING'
            if att['vnicId'] in self.s['vnics']:
                self.s['vnics'][att['vnicId']]['lifecycleState'] = 'TERMINATING'
        wr = self.new_work_request('TerminateInstance', inst['compartmentId'], 'instance', iid,
                                   'instances', 'DELETED')
        self.schedule(self.cfg['terminate_delay'], {'kind': 'instance_terminated', 'id': iid,
                                                    'wr': wr})
        # Whatever the launch's work request was waiting for will not come now.
        for w in self.s['work_requests'].values():
            if w['operationType'] == 'LaunchInstance' and \
                    w['resources'][0]['identifier'] == iid:
                self._finish_wr(w['id'], 'CANCELED')
        return 204, None, {'opc-work-request-id': wr}, {'kind': 'none', 'status': 204, 'wr': wr}

    def list_instances(self, query):
        compartment = qget(query, 'compartmentId')
        self.check_compartment(compartment, 'compartmentId', in_body=False)
        with self.lock:
            items = [i for i in self.s['instances'].values() if i['compartmentId'] == compartment]
            for key, field in (('availabilityDomain', 'availabilityDomain'),
                               ('displayName', 'displayName'),
                               ('lifecycleState', 'lifecycleState'),
                               ('capacityReservationId', 'capacityReservationId')):
                want = qget(query, key)
                if want:
                    items = [i for i in items if i.get(field) == want]
            return self.page([self.strip(i) for i in items], query)

    def page(self, items, query, sortable=True):
        """One page of a list: sorted (TIMECREATED desc by default), `limit`, and an opaque
        `page` token that names where the last page ended, so inserts meanwhile move nothing."""
        limit = qget(query, 'limit')
        try:
            limit = int(limit) if limit is not None else int(self.cfg['default_page_size'])
        except ValueError:
            raise invalid('limit must be a number')
        if not 1 <= limit <= int(self.cfg['max_page_size']):
            raise invalid('limit must be between 1 and %d' % self.cfg['max_page_size'])
        sort_by = (qget(query, 'sortBy') or 'TIMECREATED').upper() if sortable else 'TIMECREATED'
        if sort_by not in ('TIMECREATED', 'DISPLAYNAME'):
            raise invalid('sortBy must be TIMECREATED or DISPLAYNAME')
        order = (qget(query, 'sortOrder') or ('DESC' if sort_by == 'TIMECREATED' else 'ASC'))
        order = order.upper()
        if order not in ('ASC', 'DESC'):
            raise invalid('sortOrder must be ASC or DESC')
        field = 'timeCreated' if sort_by == 'TIMECREATED' else 'displayName'

        def key(i):
            return (i.get(field) or '', i['id'])
        items = sorted(items, key=key, reverse=(order == 'DESC'))
        token = qget(query, 'page')
        if token:
            try:
                after = json.loads(base64.urlsafe_b64decode(token.encode()).decode())
                after = (after[0], after[1])
            except (ValueError, TypeError, IndexError):
                raise invalid('The page token is not valid.')
            items = [i for i in items if (key(i) < after if order == 'DESC' else key(i) > after)]
        out = items[:limit]
        hdrs = {}
        if len(items) > limit:
            last = key(out[-1])
            hdrs['opc-next-page'] = base64.urlsafe_b64encode(
                json.dumps(list(last)).encode()).decode()
        return 200, out, hdrs

    # ---- VNICs ---------------------------------------------------------------------------
    def list_vnic_attachments(self, query):
        compartment = qget(query, 'compartmentId')
        self.check_compartment(compartment, 'compartmentId', in_body=False)
        with self.lock:
            items = [a for a in self.s['vnic_attachments'].values()
                     if a['compartmentId'] == compartment]
            for key in ('availabilityDomain', 'instanceId', 'vnicId'):
                want = qget(query, key)
                if want:
                    items = [a for a in items if a.get(key) == want]
            return self.page([dict(a) for a in items], query, sortable=False)

    def get_simple(self, collection, rid, strip=False):
        with self.lock:
            r = self.s[collection].get(rid)
            if not r:
                raise not_found()
            body = self.strip(r) if strip else dict(r)
            return 200, body, {'etag': self.etag(r)}

    # ---- capacity reservations -----------------------------------------------------------
    def _reservation_slot(self, r, shape, config):
        for c in r['instanceReservationConfigs']:
            if c['instanceShape'] != shape:
                continue
            sc = c.get('instanceShapeConfig')
            if sc is None or (sc.get('ocpus') == config['ocpus'] and
                              sc.get('memoryInGBs') == config['memoryInGBs']):
                return c
        return None

    def _recount_reservation(self, rid):
        r = self.s['reservations'].get(rid) if rid else None
        if not r:
            return
        for c in r['instanceReservationConfigs']:
            c['usedCount'] = 0
        for i in self.s['instances'].values():
            if i.get('capacityReservationId') != rid or i['lifecycleState'] == 'TERMINATED':
                continue
            slot = self._reservation_slot(r, i['shape'], i['shapeConfig'])
            if slot is not None:
                slot['usedCount'] += 1
        r['usedInstanceCount'] = sum(c['usedCount'] for c in r['instanceReservationConfigs'])

    def public_reservation(self, r):
        return self.strip(r)

    def create_reservation(self, d):
        self.check_fields(d, RESERVATION_FIELDS, 'CreateComputeCapacityReservationDetails')
        self.check_compartment(d.get('compartmentId'))
        self.check_ad(d.get('availabilityDomain'))
        name = d.get('displayName')
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise invalid('displayName must be a string of at most 255 characters')
        tags = self.check_tags(d.get('freeformTags'))
        configs_in = d.get('instanceReservationConfigs') or []
        if not isinstance(configs_in, list):
            raise invalid('instanceReservationConfigs must be a list')
        configs = []
        for k, c in enumerate(configs_in):
            where = 'instanceReservationConfigs[%d]' % k
            self.check_fields(c, RESERVATION_CONFIG_FIELDS, where)
            count = c.get('reservedCount')
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise invalid('%s.reservedCount must be a whole number, 0 or more' % where)
            sc = c.get('instanceShapeConfig')
            if sc is not None:
                self.check_fields(sc, RESERVATION_SHAPE_FIELDS, where + '.instanceShapeConfig')
            full = self.resolve_shape(c.get('instanceShape'), sc, where + '.instanceShapeConfig')
            configs.append({
                'instanceShape': c['instanceShape'],
                'instanceShapeConfig': ({'ocpus': full['ocpus'],
                                         'memoryInGBs': full['memoryInGBs']}
                                        if self.s['catalogue']['shapes'][c['instanceShape']]
                                        ['flex'] else None),
                'reservedCount': count, 'usedCount': 0,
                'faultDomain': c.get('faultDomain'), 'clusterConfig': None,
                'clusterPlacementGroupId': None,
            })
        is_default = d.get('isDefaultReservation', False)
        if not isinstance(is_default, bool):
            raise invalid('isDefaultReservation must be a boolean')
        total = sum(c['reservedCount'] for c in configs)
        ad = d['availabilityDomain']
        with self.lock:
            self.check_limits(total, sum(c['reservedCount'] * (
                (c['instanceShapeConfig'] or {}).get('ocpus') or
                self.s['catalogue']['shapes'][c['instanceShape']].get('ocpus', 1))
                for c in configs))
            failure = self.take_capacity(ad, total)
            if failure == 'sync':
                raise ApiError(500, 'InternalError', OUT_OF_CAPACITY)
            rid = self.ocid('capacityreservation')
            t = self.ts()
            r = {
                'id': rid, 'compartmentId': d['compartmentId'], 'availabilityDomain': ad,
                'displayName': name or 'capacity-reservation-%s' % rid[-6:],
                'freeformTags': tags, 'definedTags': {}, 'isDefaultReservation': is_default,
                'instanceReservationConfigs': configs, 'lifecycleState': 'CREATING',
                'reservedInstanceCount': total, 'usedInstanceCount': 0,
                'timeCreated': t, 'timeUpdated': t,
                '_held': failure is None and ad in self.s['capacity'],
            }
            self.s['reservations'][rid] = r
            self.count('reservations_created', r['displayName'])
            wr = self.new_work_request('CreateComputeCapacityReservation', d['compartmentId'],
                                       'computeCapacityReservation', rid,
                                       'computeCapacityReservations', 'CREATED')
            if failure == 'work_request':
                self.schedule(self.cfg['failure_delay'], {'kind': 'reservation_failed', 'id': rid,
                                                          'wr': wr, 'message': OUT_OF_CAPACITY})
            else:
                self.schedule(self.cfg['reservation_create_delay'],
                              {'kind': 'reservation_active', 'id': rid, 'wr': wr})
            return 200, self.public_reservation(r), {
                'opc-work-request-id': wr, 'etag': self.etag(r),
                'Location': '%s/computeCapacityReservations/%s' % (API, rid)}, \
                {'kind': 'reservation', 'id': rid, 'wr': wr}

    def get_reservation(self, rid):
        with self.lock:
            r = self.s['reservations'].get(rid)
            if not r:
                raise not_found()
            return 200, self.public_reservation(r), {'etag': self.etag(r)}

    def delete_reservation(self, rid, headers):
        r = self.s['reservations'].get(rid)
        if not r:
            raise not_found()
        self.count('reservation_delete_calls', r['displayName'])
        if_match = headers.get('if-match')
        if if_match and if_match != self.etag(r):
            raise ApiError(412, 'NoEtagMatch', 'The resource has changed (etag mismatch).')
        if r['lifecycleState'] in ('DELETING', 'DELETED'):
            return 202, None, {}, {'kind': 'none', 'status': 202}
        if r['lifecycleState'] == 'CREATING':
            raise ApiError(409, 'IncorrectState', 'The capacity reservation %s is CREATING; it '
                           'can be deleted once it is ACTIVE' % rid)
        r['lifecycleState'] = 'DELETING'
        r['timeUpdated'] = self.ts()
        wr = self.new_work_request('DeleteComputeCapacityReservation', r['compartmentId'],
                                   'computeCapacityReservation', rid,
                                   'computeCapacityReservations', 'DELETED')
        self.schedule(self.cfg['reservation_delete_delay'], {'kind': 'reservation_deleted',
                                                             'id': rid, 'wr': wr})
        return 202, None, {'opc-work-request-id': wr}, {'kind': 'none', 'status': 202, 'wr': wr}

    def list_reservations(self, query):
        compartment = qget(query, 'compartmentId')
        self.check_compartment(compartment, 'compartmentId', in_body=False)
        with self.lock:
            items = [r for r in self.s['reservations'].values()
                     if r['compartmentId'] == compartment]
            for key in ('availabilityDomain', 'displayName', 'lifecycleState'):
                want = qget(query, key)
                if want:
                    items = [r for r in items if r.get(key) == want]
            summary_fields = ('id', 'compartmentId', 'displayName', 'definedTags',
                              'freeformTags', 'lifecycleState', 'availabilityDomain',
                              'reservedInstanceCount', 'usedInstanceCount',
                              'isDefaultReservation', 'timeCreated')
            return self.page([{k: r[k] for k in summary_fields} for r in items], query)

    def list_reservation_instances(self, rid, query):
        with self.lock:
            r = self.s['reservations'].get(rid)
            if not r:
                raise not_found()
            items = [{'id': i['id'], 'availabilityDomain': i['availabilityDomain'],
                      'compartmentId': i['compartmentId'], 'shape': i['shape'],
                      'shapeConfig': {'ocpus': i['shapeConfig']['ocpus'],
                                      'memoryInGBs': i['shapeConfig']['memoryInGBs']},
                      'faultDomain': i['faultDomain'], 'timeCreated': i['timeCreated']}
                     for i in self.s['instances'].values()
                     if i.get('capacityReservationId') == rid and
                     i['lifecycleState'] != 'TERMINATED']
            return self.page(items, query, sortable=False)

    # ---- work requests -------------------------------------------------------------------
    def get_work_request(self, wid):
        with self.lock:
            wr = self.s['work_requests'].get(wid)
            if not wr:
                raise not_found()
            return 200, self.public_work_request(wr), {}

    def work_request_items(self, wid, which, query):
        with self.lock:
            wr = self.s['work_requests'].get(wid)
            if not wr:
                raise not_found()
            items = [dict(e, id='%s-%d' % (which, k)) for k, e in enumerate(wr[which])]
            status, page, hdrs = self.page([dict(e, timeCreated=e['timestamp']) for e in items],
                                           dict(query, sortBy=['TIMECREATED'],
                                                sortOrder=['ASC']))
            return status, [{k: v for k, v in e.items() if k in ('code', 'message',
                                                                  'timestamp')}
                            for e in page], hdrs

    def list_work_requests(self, query):
        compartment = qget(query, 'compartmentId')
        self.check_compartment(compartment, 'compartmentId', in_body=False)
        resource = qget(query, 'resourceId')
        with self.lock:
            items = [self.public_work_request(w) for w in self.s['work_requests'].values()
                     if w['compartmentId'] == compartment and
                     (not resource or any(r['identifier'] == resource for r in w['resources']))]
            return self.page([dict(w, timeCreated=w['timeAccepted']) for w in items], query,
                             sortable=False)

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
                    unknown = [k for k in data if k not in DEFAULT_CATALOGUE]
                    if unknown:
                        return 400, {'error': 'unknown catalogue keys: %s' % ', '.join(unknown)}
                    self.s['catalogue'].update(copy.deepcopy(data))
                return 200, self.s['catalogue']
            if p == 'keys':
                if method == 'POST':
                    try:
                        return 200, self.register_key(data)
                    except (ValueError, IndexError) as exc:
                        return 400, {'error': 'cannot register the key: %s' % exc}
                if method == 'DELETE':
                    key_id = data.get('keyId') or qget(query, 'keyId')
                    return 200, {'removed': self.s['keys'].pop(key_id, None) is not None}
                return 200, {'keys': [{'keyId': k, 'fingerprint': v['fingerprint']}
                                      for k, v in self.s['keys'].items()]}
            if p == 'api-keys' and method == 'POST':
                if not data.get('tenancy') or not data.get('user'):
                    return 400, {'error': 'tenancy and user are required'}
                return 200, self.make_api_key(data)
            if p == 'capacity':
                if method == 'POST':
                    zones = data.get('zones') or [data.get('zone')]
                    if not zones or None in zones:
                        return 400, {'error': 'zone or zones is required'}
                    mode = data.get('mode', 'sync')
                    if mode not in ('sync', 'work_request'):
                        return 400, {'error': 'mode must be sync or work_request'}
                    for z in zones:
                        if 'remaining' in data and data['remaining'] is None:
                            self.s['capacity'].pop(z, None)
                            continue
                        self.s['capacity'][z] = {'remaining': int(data.get('remaining', 0)),
                                                 'mode': mode}
                return 200, self.s['capacity']
            if p in ('quota', 'limits'):
                if method == 'POST':
                    metric = data.get('metric', 'instance-count')
                    if metric not in ('instance-count', 'core-count'):
                        return 400, {'error': 'metric must be instance-count or core-count'}
                    code = data.get('code', 'LimitExceeded')
                    if code not in ('LimitExceeded', 'QuotaExceeded'):
                        return 400, {'error': 'code must be LimitExceeded or QuotaExceeded'}
                    self.s['limits'] = [x for x in self.s['limits'] if x['metric'] != metric]
                    if data.get('limit') is not None:
                        self.s['limits'].append({'metric': metric, 'limit': float(data['limit']),
                                                 'code': code})
                return 200, {'limits': self.s['limits']}
            if p in ('faults', 'throttle', 'fail', 'stall', 'drop'):
                return self._control_fault(p, method, data)
            if p == 'instances' and method == 'POST':
                if isinstance(data.get('instances'), list):
                    return 200, {'instances': [self._plant_instance(d)
                                               for d in data['instances']]}
                return 200, self._plant_instance(data)
            if p == 'instances' and method == 'GET':
                return 200, {'instances': self._state_instances()}
            if p == 'reservations' and method == 'GET':
                return 200, {'reservations': self._state_reservations()}
            if p == 'work-requests' and method == 'GET':
                return 200, {'work_requests': list(self.s['work_requests'].values())}
            if p == 'counters' and method == 'GET':
                return 200, self.s['counters']
            if p == 'state' and method == 'GET':
                return 200, {'instances': self._state_instances(),
                             'reservations': self._state_reservations(),
                             'work_requests': len(self.s['work_requests']),
                             'retry_tokens': len(self.s['retry_tokens']),
                             'capacity': self.s['capacity'], 'limits': self.s['limits'],
                             'faults': self.s['faults'], 'counters': self.s['counters'],
                             'config': self.s['config']}
            if p == 'requests':
                if method == 'DELETE':
                    self.log = []
                    return 200, {'ok': True}
                since = int(qget(query, 'since', 0) or 0)
                prefix = qget(query, 'path_prefix', '')
                return 200, {'requests': [e for e in self.log if e['seq'] > since and
                                          e['path'].startswith(prefix)]}
        return 404, {'error': 'unknown control call %s %s' % (method, path)}

    def _control_fault(self, p, method, data):
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
            f.setdefault('status', 429)
            if f['status'] != 429:
                return 400, {'error': 'OCI throttles with 429 only'}
        if f['kind'] == 'error':
            f.setdefault('status', 500)
            if f['status'] not in (500, 502, 503, 504):
                return 400, {'error': 'error status must be 500, 502, 503 or 504'}
        if f['kind'] == 'stall':
            f.setdefault('seconds', 5)
        if f.get('when', 'before') not in ('before', 'after'):
            return 400, {'error': 'when must be before or after'}
        if f.get('path_regex'):
            try:
                re.compile(f['path_regex'])
            except re.error as exc:
                return 400, {'error': 'bad path_regex: %s' % exc}
        self.s['seq'] += 1
        f['id'] = self.s['seq']
        self.s['faults'].append(f)
        return 200, f

    def _state_instances(self):
        out = []
        for i in self.s['instances'].values():
            vnics = [self.s['vnics'].get(a['vnicId']) for a in self._attachments_of(i['id'])]
            primary = next((v for v in vnics if v and v['isPrimary']), None) or {}
            out.append({'id': i['id'], 'compartmentId': i['compartmentId'],
                        'zone': i['availabilityDomain'], 'name': i['displayName'],
                        'status': i['lifecycleState'], 'labels': i['freeformTags'],
                        'shape': i['shape'], 'shapeConfig': {
                            'ocpus': i['shapeConfig']['ocpus'],
                            'memoryInGBs': i['shapeConfig']['memoryInGBs']},
                        'timeCreated': i['timeCreated'], 'imageId': i['imageId'],
                        'metadata': i['metadata'], 'reservation': i['capacityReservationId'],
                        'privateIp': primary.get('privateIp'),
                        'publicIp': primary.get('publicIp'),
                        'preserveBootVolume': i.get('_preserve_boot_volume')})
        return out

    def _state_reservations(self):
        return [{'id': r['id'], 'compartmentId': r['compartmentId'],
                 'zone': r['availabilityDomain'], 'name': r['displayName'],
                 'status': r['lifecycleState'], 'count': r['reservedInstanceCount'],
                 'inUseCount': r['usedInstanceCount'],
                 'machineType': r['instanceReservationConfigs'][0]['instanceShape']
                 if r['instanceReservationConfigs'] else None,
                 'shapeConfig': r['instanceReservationConfigs'][0]['instanceShapeConfig']
                 if r['instanceReservationConfigs'] else None,
                 'labels': r['freeformTags'], 'timeCreated': r['timeCreated']}
                for r in self.s['reservations'].values()]

    def _plant_instance(self, d):
        """An instance put there directly (no signature, capacity or work request): someone
        else's, or one of ours from a crash, for the reconciler to find."""
        iid = self.ocid('instance')
        ad = d.get('zone') or self.s['catalogue']['availability_domains'][0]
        shape = d.get('shape', 'VM.Standard.E4.Flex')
        spec = self.s['catalogue']['shapes'].get(shape, {'flex': False, 'ocpus': 1,
                                                         'memory': 16})
        config = self.resolve_shape(shape, {'ocpus': 1} if spec['flex'] else None, 'shapeConfig')
        inst = {
            'id': iid, 'compartmentId': d.get('compartmentId') or
            'ocid1.compartment.oc1..aaaaaaaaplanted',
            'availabilityDomain': ad, 'displayName': d.get('name', 'planted-%s' % iid[-6:]),
            'shape': shape, 'shapeConfig': config,
            'sourceDetails': {'sourceType': 'image', 'imageId': d.get('imageId'),
                              'bootVolumeSizeInGBs': None},
            'imageId': d.get('imageId'), 'metadata': d.get('metadata', {}),
            'extendedMetadata': {}, 'freeformTags': d.get('labels', {}), 'definedTags': {},
            'systemTags': {}, 'lifecycleState': d.get('status', 'RUNNING'),
            'timeCreated': d.get('timeCreated') or self.ts(), 'region': self.cfg['region_key'],
            'faultDomain': 'FAULT-DOMAIN-1', 'capacityReservationId': None,
            'launchMode': 'PARAVIRTUALIZED',
        }
        self.s['instances'][iid] = inst
        self._attach_primary_vnic(inst, d.get('subnetId', 'ocid1.subnet.oc1.iad.aaaaplanted'),
                                  {}, d.get('publicIp') is not None)
        for att in self._attachments_of(iid):
            vnic = self.s['vnics'][att['vnicId']]
            if inst['lifecycleState'] == 'RUNNING':
                att['lifecycleState'] = 'ATTACHED'
                vnic['lifecycleState'] = 'AVAILABLE'
                vnic['publicIp'] = d.get('publicIp')
            vnic.pop('_wants_public_ip', None)
            if d.get('privateIp'):
                vnic['privateIp'] = d['privateIp']
        return self.strip(inst)


# --------------------------------------------------------------------------------------------
# HTTP


OCI_5XX = {
    500: ('InternalServerError', 'Internal Server Error'),
    502: ('BadGateway', 'Bad Gateway'),
    503: ('ServiceUnavailable', 'Service Unavailable'),
    504: ('GatewayTimeout', 'Gateway Timeout'),
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'oci-emulator'
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

    def do_PUT(self):
        self._handle('PUT')

    def do_DELETE(self):
        self._handle('DELETE')

    def do_PATCH(self):
        self._handle('PATCH')

    def _read_body(self):
        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline() not in (b'\r\n', b'\n', b''):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b''.join(chunks)
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n > 0 else b''

    def _send(self, status, data, headers=None, ctype='application/json'):
        self._status = status
        self._finish_entry()
        self.send_response(status)
        if data is not None:
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

    def date_time_string(self, timestamp=None):
        # The Date of every answer is the emulator's clock (clock_offset moves it).
        return http_date(self.server.emu.clock())

    def _api_headers(self, extra=None):
        hdrs = {'opc-request-id': self._request_id}
        hdrs.update(extra or {})
        return hdrs

    def _send_error(self, exc):
        self._send(exc.status, json.dumps(exc.body()).encode(), self._api_headers(exc.headers))

    def _handle(self, method):
        emu = self.server.emu
        self._status = None
        self._t0 = now()
        url = urllib.parse.urlsplit(self.path)
        path, target = url.path, self.path
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self._read_body()
        client_rid = self.headers.get('opc-request-id')
        self._request_id = '/'.join(([client_rid] if client_rid else []) +
                                    [secrets.token_hex(16).upper() for _ in range(
                                        2 if client_rid else 3)])
        Emulator._tl.route = None
        Emulator._tl.auth_error = None
        Emulator._tl.replayed = False
        Emulator._tl.zone = None
        self._entry = emu.log_request(method, path, url.query, {
            'user_agent': self.headers.get('User-Agent', ''),
            'opc_request_id': self._request_id,
            'retry_token': self.headers.get('opc-retry-token')})
        try:
            if path.startswith('/_emulator/'):
                status, obj = emu.control(method, path, query, body)
                self._send(status, json.dumps(obj).encode())
                return
            faults = emu.take_faults(method, path, 'before')
            if faults:
                self._entry['fault'] = [f['kind'] for f in faults]
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
                    self._send_error(ApiError(429, 'TooManyRequests',
                                              f.get('message', 'Too many requests for the user'),
                                              hdrs))
                    return
                if f['kind'] == 'error':
                    code, msg = OCI_5XX.get(int(f['status']), OCI_5XX[500])
                    self._send_error(ApiError(int(f['status']), f.get('code', code),
                                              f.get('message', msg)))
                    return
            if not path.startswith(API + '/'):
                raise ApiError(404, 'NotFound', 'Not Found')
            self._entry['key_id'] = emu.authenticate(method, target, self.headers, body)
            status, obj, hdrs = emu.api(method, path[len(API):], query, body, self.headers)
            data = json.dumps(obj).encode() if obj is not None else None
            after = emu.take_faults(method, path, 'after')
            if after:
                self._entry['fault'] = self._entry.get('fault', []) + \
                    [f['kind'] + '-after' for f in after]
            for f in after:
                if f['kind'] == 'stall':
                    time.sleep(float(f.get('seconds', 5)))
            for f in after:
                if f['kind'] == 'drop':
                    self._drop(bool(f.get('reset')))
                    return
            self._send(status, data, self._api_headers(hdrs))
        except ApiError as exc:
            try:
                self._send_error(exc)
            except (BrokenPipeError, ConnectionResetError):
                self._status = 'client-gone'
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self._status = 'client-gone'
            self.close_connection = True
        except Exception as exc:  # an emulator bug: answer it the way OCI answers a 500
            import traceback
            traceback.print_exc()
            self._send_error(ApiError(500, 'InternalServerError',
                                      'Internal Server Error (emulator: %r)' % exc))
        finally:
            self._finish_entry()

    def _finish_entry(self):
        emu = self.server.emu
        with emu.lock:
            self._entry['status'] = self._status
            self._entry['duration_ms'] = round((now() - self._t0) * 1000, 2)
            self._entry['route'] = getattr(Emulator._tl, 'route', None)
            if getattr(Emulator._tl, 'auth_error', None):
                self._entry['auth_error'] = Emulator._tl.auth_error
            if getattr(Emulator._tl, 'replayed', False):
                self._entry['replayed'] = True
            if getattr(Emulator._tl, 'zone', None):
                self._entry['zone'] = Emulator._tl.zone


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
                    sys.stderr.write('oci_emulator: cannot save state: %s\n' % exc)
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
    sys.stderr.write('oci_emulator listening on %s://%s:%d\n' % (emu.scheme, args.host, port))
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
