#!/usr/bin/env python3
"""Azure Resource Manager emulator: Microsoft.Compute VMs and capacity reservations.

A stateful, in-memory, thread-safe emulator of the parts of Azure Resource Manager that
cloudbrain uses (see README.md beside this file): Entra ID's client-credentials token endpoint,
the managed identity endpoint (IMDS), virtual machines with the NICs, public IPs and OS disks
they make through networkInterfaceConfigurations, capacity reservation groups and reservations,
long-running operations (Azure-AsyncOperation and Location), and a control API under
/_emulator/ to plant stock-outs, throttling and lost answers. Standard library only.
"""

import argparse
import base64
import copy
import datetime
import heapq
import http.server
import json
import os
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

DEFAULT_CONFIG = {
    'location': 'eastus',
    'zones': ['1', '2', '3'],
    'token_lifetime': 3600,        # seconds an issued token is good for
    'vm_create_delay': 0.3,        # PUT accepted -> allocation decided
    'vm_delete_delay': 0.2,
    'vm_update_delay': 0.05,
    'reservation_create_delay': 0.2,
    'reservation_delete_delay': 0.2,
    'lro_retry_after': 0,          # Retry-After (s) sent with 201/202 and with polls in progress
    'lro_headers': 'both',         # async (Azure-AsyncOperation only), location, both
    'page_size': 50,               # items per list page before a nextLink
    'imds_system_identity': True,  # IMDS serves a system-assigned identity
    'request_log_limit': 100000,
    'ratelimit_reads': 11999,      # x-ms-ratelimit-remaining-subscription-* per 5 minutes
    'ratelimit_writes': 1199,
}

# VM sizes: vCPUs (what quota counts).
VM_SIZES = {
    'Standard_B1s': 1, 'Standard_B2s': 2, 'Standard_DS1_v2': 1, 'Standard_D1_v2': 1,
    'Standard_D2s_v3': 2, 'Standard_D4s_v3': 4, 'Standard_D2s_v5': 2, 'Standard_D4s_v5': 4,
    'Standard_D8s_v5': 8, 'Standard_D2ds_v5': 2, 'Standard_D4ds_v5': 4, 'Standard_F2s_v2': 2,
    'Standard_E2s_v5': 2, 'Standard_E4s_v5': 4,
}

# Marketplace images: publisher:offer:sku (any version, and 'latest').
IMAGES = {
    'Canonical:ubuntu-24_04-lts:server', 'Canonical:ubuntu-24_04-lts:server-gen1',
    'Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2',
    'Canonical:0001-com-ubuntu-server-jammy:22_04-lts',
    'Debian:debian-12:12', 'Debian:debian-12:12-gen2',
    'MicrosoftWindowsServer:WindowsServer:2022-datacenter-azure-edition',
}

DISK_TYPES = {'Standard_LRS', 'StandardSSD_LRS', 'Premium_LRS', 'StandardSSD_ZRS',
              'Premium_ZRS', 'PremiumV2_LRS', 'UltraSSD_LRS'}

ALLOCATION_MESSAGES = {
    'ZonalAllocationFailed':
        'Allocation failed. We do not have sufficient capacity for the requested VM size in this '
        'zone. Read more about improving likelihood of allocation success at '
        'http://aka.ms/allocation-guidance',
    'AllocationFailed':
        'Allocation failed. If you are trying to add a new VM to an Availability Set or update/'
        'resize an existing VM in an Availability Set, please note that such Allocation '
        'Request has to be attempted on the same cluster. Read more about improving likelihood '
        'of allocation success at http://aka.ms/allocation-guidance',
    'OverconstrainedAllocationRequest':
        'Allocation failed. VM(s) with the following constraints cannot be allocated, because '
        'the condition is too restrictive. Please remove some constraints and try again. '
        'Constraints applied are: - Availability Zone - VM Size',
}

COMPUTE = 'Microsoft.Compute'
NETWORK = 'Microsoft.Network'
GUID_RX = re.compile(r'^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-'
                     r'[0-9a-fA-F]{12}$')
API_VERSION_RX = re.compile(r'^\d{4}-\d{2}-\d{2}(-preview)?$')
NAME_RX = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


def now():
    return time.time()


def ts(t=None):
    """ARM's times: UTC, seven fractional digits, +00:00."""
    t = now() if t is None else t
    d = datetime.datetime.fromtimestamp(t, datetime.timezone.utc)
    return d.strftime('%Y-%m-%dT%H:%M:%S.') + '%07d' % (d.microsecond * 10) + '+00:00'


class ArmError(Exception):
    def __init__(self, status, code, message, target=None, details=None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.target, self.details, self.headers = target, details, headers or {}

    def body(self):
        e = {'code': self.code, 'message': self.message}
        if self.target:
            e['target'] = self.target
        if self.details:
            e['details'] = self.details
        return {'error': e}


def not_found(kind, name, rg):
    return ArmError(404, 'ResourceNotFound',
                    "The Resource '%s/%s' under resource group '%s' was not found. For more "
                    "details please go to https://aka.ms/ARMResourceNotFoundFix" % (kind, name, rg))


def invalid(message, target=None):
    return ArmError(400, 'InvalidParameter', message, target=target)


def qget(query, key, default=None):
    for k, v in query.items():
        if k.lower() == key.lower():
            return v[0] if v else default
    return default


def valid_ssh_key(data):
    parts = (data or '').split()
    if len(parts) < 2 or parts[0] not in ('ssh-rsa', 'ssh-ed25519', 'ecdsa-sha2-nistp256',
                                          'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521'):
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except ValueError:
        return False
    if len(blob) < 4:
        return False
    n = struct.unpack('>I', blob[:4])[0]
    return blob[4:4 + n].decode('ascii', 'replace') == parts[0]


class Emulator:
    def __init__(self, config=None, verbose=False):
        self.lock = threading.RLock()
        self.verbose = verbose
        self.scheme = 'http'
        self.reset(config)

    # ---- state ---------------------------------------------------------------------------
    def reset(self, config=None):
        with self.lock:
            cfg = copy.deepcopy(DEFAULT_CONFIG)
            if config:
                cfg.update(config)
            self.s = {
                'config': cfg,
                'clients': {},      # (tenant, client_id) -> secret
                'identities': {},   # client_id -> True (user-assigned)
                'tokens': {},       # token -> {'principal','expires'}
                'vms': {},          # lower(name) -> {'res': resource, 'meta': {...}}
                'nics': {},         # lower(name) -> resource
                'ips': {},          # lower(name) -> resource
                'disks': {},        # lower(name) -> resource
                'groups': {},       # lower(name) -> resource
                'reservations': {},  # (lower(group), lower(name)) -> {'res','meta'}
                'operations': {},   # id -> {'status','error','start','end'}
                'capacity': {},     # zone -> {'remaining': int, 'code': str}
                'skus': {},         # zone -> [sizes not offered]
                'quota': None,      # {'cores': n}
                'faults': [],
                'events': [],
                'seq': 0,
                'ip_next': 1,
                'private_next': 4,
                'window': {'start': now(), 'reads': 0, 'writes': 0},
                'counters': {'put_calls': {}, 'vms_created': {}, 'vms_allocated': {},
                             'vms_deleted': {}, 'delete_calls': {}, 'allocation_failures': {},
                             'reservation_put_calls': {}, 'reservations_created': {},
                             'reservations_deleted': {}, 'methods': {}, 'requests_total': 0,
                             'faults_injected': 0, 'tokens_issued': 0, 'auth_failures': 0,
                             'idempotent_replays': 0, 'dedup_hits': 0, 'lro_polls': 0,
                             'throttled': 0},
            }
            self.log = []
            self.log_seq = 0

    @property
    def cfg(self):
        return self.s['config']

    def count(self, name, key=None):
        c = self.s['counters']
        if key is None:
            c[name] += 1
        else:
            c[name][key] = c[name].get(key, 0) + 1

    def schedule(self, delay, event):
        self.s['seq'] += 1
        heapq.heappush(self.s['events'], [now() + max(0.0, delay), self.s['seq'], event])

    def advance(self):
        with self.lock:
            t = now()
            while self.s['events'] and self.s['events'][0][0] <= t:
                _, _, ev = heapq.heappop(self.s['events'])
                self._apply(ev)

    # ---- operations ----------------------------------------------------------------------
    def new_operation(self, result=None):
        """`result`: ['vm', key] or ['reservation', key] for a PUT or PATCH, whose Location
        poll answers with the resource once done (a DELETE's answers 204)."""
        op_id = str(uuid.uuid4())
        self.s['operations'][op_id] = {'status': 'InProgress', 'error': None, 'start': now(),
                                       'end': None, 'result': result}
        return op_id

    def finish_operation(self, op_id, status, error=None):
        op = self.s['operations'].get(op_id)
        if not op or op['status'] != 'InProgress':
            return
        op['status'], op['error'], op['end'] = status, error, now()

    def lro_headers(self, op_id, sub, base, api_version):
        loc = self.cfg['location']
        prefix = '%s/subscriptions/%s/providers/%s/locations/%s' % (base, sub, COMPUTE, loc)
        h = {}
        style = self.cfg['lro_headers']
        if style in ('async', 'both'):
            h['Azure-AsyncOperation'] = '%s/operations/%s?p=%s&api-version=%s' % (
                prefix, op_id, uuid.uuid4(), api_version)
        if style in ('location', 'both'):
            h['Location'] = '%s/operationResults/%s?p=%s&api-version=%s' % (
                prefix, op_id, uuid.uuid4(), api_version)
        h['Retry-After'] = str(int(self.cfg['lro_retry_after']))
        return h

    def operation_status(self, op_id, as_location):
        op = self.s['operations'].get(op_id)
        if not op:
            raise ArmError(404, 'NotFound', "The operation '%s' was not found." % op_id)
        self.count('lro_polls')
        retry = {'Retry-After': str(int(self.cfg['lro_retry_after']))}
        if as_location:
            if op['status'] == 'InProgress':
                return 202, None, retry
            if op['status'] == 'Succeeded':
                view = self._operation_result(op.get('result'))
                return (200, view, {}) if view is not None else (204, None, {})
            err = op['error'] or {'code': 'Canceled', 'message': 'The operation was canceled.'}
            status = 409 if err['code'] in ALLOCATION_MESSAGES else 400
            return status, {'error': err}, {}
        body = {'startTime': ts(op['start']), 'status': op['status'], 'name': op_id}
        if op['end']:
            body['endTime'] = ts(op['end'])
        if op['error']:
            body['error'] = op['error']
        return 200, body, (retry if op['status'] == 'InProgress' else {})

    def _operation_result(self, result):
        if not result:
            return None
        if result[0] == 'vm' and result[1] in self.s['vms']:
            return self.vm_view(self.s['vms'][result[1]], '')
        if result[0] == 'reservation' and tuple(result[1]) in self.s['reservations']:
            return self.reservation_view(self.s['reservations'][tuple(result[1])], '')
        return None

    # ---- scheduled transitions -----------------------------------------------------------
    def _apply(self, ev):
        kind = ev['kind']
        if kind == 'vm_allocate':
            self._allocate_vm(ev)
        elif kind == 'vm_deleted':
            self._remove_vm(ev['name'])
            self.finish_operation(ev['op'], 'Succeeded')
        elif kind == 'vm_updated':
            vm = self.s['vms'].get(ev['name'])
            if vm and vm['res']['properties']['provisioningState'] == 'Updating':
                vm['res']['properties']['provisioningState'] = 'Succeeded'
            self.finish_operation(ev['op'], 'Succeeded')
        elif kind == 'res_ready':
            self._ready_reservation(ev)
        elif kind == 'res_deleted':
            r = self.s['reservations'].pop(tuple(ev['key']), None)
            if r:
                self.count('reservations_deleted', r['res']['name'])
            self.finish_operation(ev['op'], 'Succeeded')
        elif kind == 'op_done':
            self.finish_operation(ev['op'], 'Succeeded')

    def _take_capacity(self, zone, units):
        cap = self.s['capacity'].get(zone)
        if not cap or cap['remaining'] is None:
            return True, None
        if cap['remaining'] < units:
            return False, cap.get('code', 'ZonalAllocationFailed')
        cap['remaining'] -= units
        return True, None

    def _allocate_vm(self, ev):
        vm = self.s['vms'].get(ev['name'])
        if not vm or vm['meta']['op'] != ev['op']:
            return  # deleted or re-PUT meanwhile
        res, meta = vm['res'], vm['meta']
        props = res['properties']
        if props['provisioningState'] not in ('Creating', 'Updating'):
            return
        zone = meta['zone']
        ok, code = True, None
        rkey = meta.get('reservation')
        consumed = False
        if rkey:
            r = self.s['reservations'].get(tuple(rkey))
            if r and len(r['meta']['allocated']) < r['res']['sku']['capacity']:
                consumed = True
        if not consumed:
            ok, code = self._take_capacity(zone, 1)
        if not ok:
            props['provisioningState'] = 'Failed'
            meta['failure'] = {'code': code, 'message': ALLOCATION_MESSAGES.get(
                code, ALLOCATION_MESSAGES['ZonalAllocationFailed'])}
            meta['power'] = None
            if rkey and tuple(rkey) in self.s['reservations']:
                r = self.s['reservations'][tuple(rkey)]
                if res['id'] in r['meta']['associated']:
                    r['meta']['associated'].remove(res['id'])
                meta['reservation'] = None
            self.count('allocation_failures', res['name'])
            self.finish_operation(ev['op'], 'Failed', {
                'code': code, 'message': meta['failure']['message']})
            return
        if rkey and consumed:
            self.s['reservations'][tuple(rkey)]['meta']['allocated'].append(res['id'])
        props['provisioningState'] = 'Succeeded'
        meta['failure'] = None
        meta['power'] = 'running'
        ip = self.s['ips'].get(meta.get('ip') or '')
        if ip is not None and not ip['properties'].get('ipAddress'):
            n = self.s['ip_next']
            self.s['ip_next'] += 1
            ip['properties']['ipAddress'] = '203.0.%d.%d' % (113 + (n - 1) // 254,
                                                              (n - 1) % 254 + 1)
        self.count('vms_allocated', res['name'])
        self.finish_operation(ev['op'], 'Succeeded')

    def _remove_vm(self, name):
        vm = self.s['vms'].pop(name, None)
        if not vm:
            return
        meta, res = vm['meta'], vm['res']
        self.count('vms_deleted', res['name'])
        for r in self.s['reservations'].values():
            for lst in (r['meta']['associated'], r['meta']['allocated']):
                if res['id'] in lst:
                    lst.remove(res['id'])
        for kind, key in (('nics', 'nic'), ('ips', 'ip'), ('disks', 'disk')):
            n = meta.get(key)
            if not n or n not in self.s[kind]:
                continue
            if meta.get(key + '_delete', 'Detach') == 'Delete':
                del self.s[kind][n]
            else:
                # Detached: it outlives the VM (and is billed), as on Azure.
                self.s[kind][n]['properties'].pop('virtualMachine', None)
                self.s[kind][n]['properties'].pop('ipConfiguration', None)

    def _ready_reservation(self, ev):
        r = self.s['reservations'].get(tuple(ev['key']))
        if not r or r['meta']['op'] != ev['op']:
            return
        props = r['res']['properties']
        ok, code = self._take_capacity(r['res']['zones'][0], ev['units'])
        if not ok:
            props['provisioningState'] = 'Failed'
            r['meta']['failure'] = {'code': code, 'message': ALLOCATION_MESSAGES.get(
                code, ALLOCATION_MESSAGES['ZonalAllocationFailed'])}
            self.finish_operation(ev['op'], 'Failed', dict(r['meta']['failure']))
            return
        props['provisioningState'] = 'Succeeded'
        props['provisioningTime'] = ts()
        if ev.get('new'):
            self.count('reservations_created', r['res']['name'])
        self.finish_operation(ev['op'], 'Succeeded')

    # ---- auth ----------------------------------------------------------------------------
    def issue_token(self, principal):
        tok = 'eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.' + secrets.token_urlsafe(32)
        life = int(self.cfg['token_lifetime'])
        self.s['tokens'][tok] = {'principal': principal, 'expires': now() + life}
        self.count('tokens_issued')
        return tok, life

    def token_endpoint(self, tenant, form):
        def err(status, code, aadsts, desc):
            self.count('auth_failures')
            return status, {'error': code, 'error_description': '%s: %s\r\nTrace ID: %s\r\n'
                            'Correlation ID: %s\r\nTimestamp: %s' % (
                                aadsts, desc, uuid.uuid4(), uuid.uuid4(),
                                datetime.datetime.utcnow().strftime('%Y-%m-%d %H:%M:%SZ')),
                            'error_codes': [int(aadsts[6:])], 'timestamp': ts()}
        grant = (form.get('grant_type') or [''])[0]
        if grant != 'client_credentials':
            return err(400, 'unsupported_grant_type', 'AADSTS70003',
                       "The app requested an unsupported grant type '%s'." % grant)
        client_id = (form.get('client_id') or [''])[0]
        secret = (form.get('client_secret') or [''])[0]
        scope = (form.get('scope') or [''])[0]
        tenants = {t for t, _ in self.s['clients']}
        if tenant not in tenants:
            return err(400, 'invalid_request', 'AADSTS90002',
                       "Tenant '%s' not found. Check to make sure you have the correct tenant ID "
                       "and are signing into the correct cloud." % tenant)
        if (tenant, client_id) not in self.s['clients']:
            return err(400, 'unauthorized_client', 'AADSTS700016',
                       "Application with identifier '%s' was not found in the directory '%s'."
                       % (client_id, tenant))
        if not scope.endswith('/.default'):
            return err(400, 'invalid_scope', 'AADSTS1002012',
                       "The provided value for scope %s is not valid. Client credential flows "
                       "must have a scope value with /.default suffixed to the resource "
                       "identifier (application ID URI)." % scope)
        if not secret:
            return err(401, 'invalid_client', 'AADSTS7000216',
                       "'client_assertion', 'client_secret' or 'request' is required for the "
                       "'client_credentials' grant type.")
        if not secrets.compare_digest(secret, self.s['clients'][(tenant, client_id)]):
            return err(401, 'invalid_client', 'AADSTS7000215',
                       "Invalid client secret provided. Ensure the secret being sent in the "
                       "request is the client secret value, not the client secret ID, for a "
                       "secret added to app '%s'." % client_id)
        tok, life = self.issue_token('app:' + client_id)
        return 200, {'token_type': 'Bearer', 'expires_in': life, 'ext_expires_in': life,
                     'access_token': tok}

    def imds_token(self, headers, query):
        if (headers.get('Metadata') or '').lower() != 'true':
            return 400, {'error': 'invalid_request',
                         'error_description': 'Required metadata header not specified'}
        resource = qget(query, 'resource')
        if not resource:
            return 400, {'error': 'invalid_request',
                         'error_description': 'Required query variable \'resource\' is missing'}
        client_id = qget(query, 'client_id')
        if client_id:
            if client_id not in self.s['identities']:
                self.count('auth_failures')
                return 400, {'error': 'invalid_request',
                             'error_description': 'Identity not found'}
            principal = 'mi:' + client_id
        else:
            if not self.cfg['imds_system_identity']:
                self.count('auth_failures')
                return 400, {'error': 'invalid_request',
                             'error_description': 'Identity not found'}
            principal = 'mi:system'
        tok, life = self.issue_token(principal)
        return 200, {'access_token': tok, 'client_id': client_id or str(uuid.uuid5(
            uuid.NAMESPACE_URL, 'system')), 'expires_in': str(life),
            'expires_on': str(int(now()) + life), 'ext_expires_in': str(life),
            'not_before': str(int(now())), 'resource': resource, 'token_type': 'Bearer'}

    def check_bearer(self, headers):
        auth = headers.get('Authorization') or ''
        www = {'WWW-Authenticate': 'Bearer authorization_uri="https://login.windows.net/", '
                                   'error="invalid_token", error_description="The '
                                   'authentication failed because of missing \'Authorization\' '
                                   'header."'}
        if not auth:
            self.count('auth_failures')
            raise ArmError(401, 'AuthenticationFailed',
                           "Authentication failed. The 'Authorization' header is missing.",
                           headers=www)
        if not auth.startswith('Bearer '):
            self.count('auth_failures')
            raise ArmError(401, 'AuthenticationFailed',
                           "Authentication failed. The 'Authorization' header is provided in "
                           "an invalid format.", headers=www)
        entry = self.s['tokens'].get(auth[7:].strip())
        if not entry:
            self.count('auth_failures')
            raise ArmError(401, 'InvalidAuthenticationToken',
                           'The access token is invalid.', headers=www)
        if entry['expires'] is not None and entry['expires'] <= now():
            self.count('auth_failures')
            raise ArmError(401, 'ExpiredAuthenticationToken',
                           "The access token expiry UTC time '%s' is earlier than current UTC "
                           "time '%s'." % (
                               datetime.datetime.utcfromtimestamp(entry['expires'])
                               .strftime('%m/%d/%Y %I:%M:%S %p'),
                               datetime.datetime.utcnow().strftime('%m/%d/%Y %I:%M:%S %p')),
                           headers=www)
        return entry['principal']

    # ---- faults --------------------------------------------------------------------------
    def take_faults(self, method, path, phase, query=''):
        fired = []
        with self.lock:
            t = now()
            for f in list(self.s['faults']):
                if f.get('when', 'before') != phase:
                    continue
                if f.get('method') and f['method'].upper() != method:
                    continue
                scope_rx = f.get('path_regex') or r'^/subscriptions/'
                if not re.search(scope_rx, path):
                    continue
                if f.get('query_regex') and not re.search(f['query_regex'], query):
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

    def ratelimit_headers(self, method):
        w = self.s['window']
        if now() - w['start'] > 300:
            w.update({'start': now(), 'reads': 0, 'writes': 0})
        if method == 'GET':
            w['reads'] += 1
            return {'x-ms-ratelimit-remaining-subscription-reads':
                    str(max(0, self.cfg['ratelimit_reads'] - w['reads']))}
        w['writes'] += 1
        return {'x-ms-ratelimit-remaining-subscription-writes':
                str(max(0, self.cfg['ratelimit_writes'] - w['writes']))}

    # ---- request log ---------------------------------------------------------------------
    def log_request(self, method, path, query, extra=None):
        with self.lock:
            self.log_seq += 1
            e = {'seq': self.log_seq, 't': now(), 'time': ts(), 'method': method, 'path': path,
                 'query': query, 'status': None}
            if extra:
                e.update(extra)
            self.log.append(e)
            limit = self.cfg['request_log_limit']
            if len(self.log) > limit:
                del self.log[:len(self.log) - limit]
            if path.startswith('/subscriptions/'):
                self.s['counters']['requests_total'] += 1
            return e

    # ---- ARM -----------------------------------------------------------------------------
    def arm(self, method, path, query, body, headers, base):
        """Returns (status, body object or None, headers, route)."""
        self.advance()
        api_version = qget(query, 'api-version')
        if not api_version:
            raise ArmError(400, 'MissingApiVersionParameter',
                           "The api-version query parameter (?api-version=) is required for all "
                           "requests.")
        if not API_VERSION_RX.match(api_version):
            raise ArmError(400, 'InvalidApiVersionParameter',
                           "The api-version '%s' is invalid. The supported versions are "
                           "'2024-07-01,2024-03-01,2023-09-01'." % api_version)
        self.check_bearer(headers)
        parts = [urllib.parse.unquote(p) for p in path.strip('/').split('/')]
        low = [p.lower() for p in parts]
        if len(parts) < 2 or low[0] != 'subscriptions' or not GUID_RX.match(parts[1]):
            raise ArmError(400, 'InvalidSubscriptionId',
                           "The provided subscription identifier '%s' is malformed or invalid."
                           % (parts[1] if len(parts) > 1 else ''))
        sub = parts[1]
        # Operation status: /subscriptions/S/providers/Microsoft.Compute/locations/L/operations/ID
        if len(parts) == 8 and low[2] == 'providers' and low[4] == 'locations' and \
                low[6] in ('operations', 'operationresults') and method == 'GET':
            status, obj, h = self.operation_status(parts[7], low[6] == 'operationresults')
            return status, obj, h, 'operations.get'
        if len(parts) < 6 or low[2] != 'resourcegroups' or low[4] != 'providers':
            raise ArmError(404, 'InvalidResourceType', 'The resource type could not be found.')
        rg = parts[3]
        ns = low[5]
        rest = parts[6:]
        rlow = low[6:]
        ctx = {'sub': sub, 'rg': rg, 'base': base, 'api': api_version}
        data = None
        if method in ('PUT', 'PATCH'):
            try:
                data = json.loads(body or b'{}')
            except ValueError as exc:
                raise ArmError(400, 'InvalidRequestContent',
                               "The request content was invalid and could not be deserialized: "
                               "'%s'." % exc)
            if not isinstance(data, dict):
                raise ArmError(400, 'InvalidRequestContent',
                               'The request content was invalid and could not be deserialized.')
        if ns == COMPUTE.lower():
            if rlow[:1] == ['virtualmachines']:
                return self.vms(method, rest, query, data, ctx)
            if rlow[:1] == ['capacityreservationgroups']:
                return self.groups(method, rest, query, data, ctx)
            if rlow[:1] == ['disks'] and method == 'GET':
                return self.simple(self.s['disks'], 'disks', rest, ctx, 'Microsoft.Compute/disks')
        if ns == NETWORK.lower() and method == 'GET':
            if rlow[:1] == ['networkinterfaces']:
                return self.nic_get(rest, query, ctx)
            if rlow[:1] == ['publicipaddresses']:
                return self.simple(self.s['ips'], 'publicIPAddresses', rest, ctx,
                                   'Microsoft.Network/publicIPAddresses')
        raise ArmError(404, 'InvalidResourceType',
                       "The resource type '%s' could not be found in the namespace '%s' for api "
                       "version '%s'." % ('/'.join(rest[:1]), parts[5], api_version))

    def rg_id(self, ctx):
        return '/subscriptions/%s/resourceGroups/%s' % (ctx['sub'], ctx['rg'])

    def page(self, items, query, ctx, path):
        start = int(qget(query, '$skiptoken', '0') or 0)
        size = int(self.cfg['page_size'])
        out = {'value': items[start:start + size]}
        if start + size < len(items):
            out['nextLink'] = '%s%s?api-version=%s&%%24skiptoken=%d' % (
                ctx['base'], path, ctx['api'], start + size)
        return out

    def simple(self, table, kind, rest, ctx, type_name):
        path = self.rg_id(ctx) + '/providers/' + type_name
        if len(rest) == 1:
            items = [r for r in table.values()]
            return 200, self.page(sorted(items, key=lambda r: r['name']), {}, ctx, path), {}, \
                kind + '.list'
        r = table.get(rest[1].lower())
        if not r:
            raise not_found(type_name, rest[1], ctx['rg'])
        return 200, r, {}, kind + '.get'

    def nic_get(self, rest, query, ctx):
        if len(rest) == 1:
            return self.simple(self.s['nics'], 'networkInterfaces', rest, ctx,
                               'Microsoft.Network/networkInterfaces')
        nic = self.s['nics'].get(rest[1].lower())
        if not nic or len(rest) != 2:
            raise not_found('Microsoft.Network/networkInterfaces', rest[1], ctx['rg'])
        out = copy.deepcopy(nic)
        expand = (qget(query, '$expand') or '').lower()
        if 'publicipaddress' in expand:
            for c in out['properties']['ipConfigurations']:
                pip = c['properties'].get('publicIPAddress')
                if pip:
                    full = self.s['ips'].get(pip['id'].rsplit('/', 1)[1].lower())
                    if full:
                        c['properties']['publicIPAddress'] = copy.deepcopy(full)
        return 200, out, {}, 'networkInterfaces.get'

    # ---- virtual machines ----------------------------------------------------------------
    def vm_view(self, vm, expand):
        out = copy.deepcopy(vm['res'])
        meta = vm['meta']
        props = out['properties']
        if meta.get('group_id'):
            props['capacityReservation'] = {'capacityReservationGroup': {'id': meta['group_id']}}
        if 'instanceview' in expand:
            state = props['provisioningState']
            statuses = []
            if state == 'Failed' and meta.get('failure'):
                f = meta['failure']
                statuses.append({'code': 'ProvisioningState/failed/%s' % f['code'],
                                 'level': 'Error', 'displayStatus': 'Provisioning failed',
                                 'message': f['message'], 'time': ts()})
            else:
                statuses.append({'code': 'ProvisioningState/%s' % state.lower(),
                                 'level': 'Info',
                                 'displayStatus': 'Provisioning %s' % state.lower()})
            power = meta.get('power')
            if power:
                statuses.append({'code': 'PowerState/%s' % power, 'level': 'Info',
                                 'displayStatus': 'VM %s' % power})
            props['instanceView'] = {'computerName': props['osProfile']['computerName'],
                                     'osName': 'ubuntu', 'hyperVGeneration': 'V2',
                                     'statuses': statuses}
        return out

    def vms(self, method, rest, query, data, ctx):
        expand = (qget(query, '$expand') or '').lower()
        if len(rest) == 1:
            if method != 'GET':
                raise ArmError(405, 'MethodNotAllowed', 'The method is not allowed.')
            self.count('methods', 'virtualMachines.list')
            prefix = (self.rg_id(ctx) + '/').lower()
            items = [self.vm_view(v, '') for _, v in sorted(self.s['vms'].items())
                     if v['res']['id'].lower().startswith(prefix)]
            return 200, self.page(items, query, ctx, self.rg_id(ctx) +
                                  '/providers/Microsoft.Compute/virtualMachines'), {}, \
                'virtualMachines.list'
        name = rest[1]
        key = name.lower()
        if len(rest) == 3 and rest[2].lower() == 'instanceview' and method == 'GET':
            vm = self.s['vms'].get(key)
            if not vm:
                raise not_found('Microsoft.Compute/virtualMachines', name, ctx['rg'])
            return 200, self.vm_view(vm, 'instanceview')['properties']['instanceView'], {}, \
                'virtualMachines.instanceView'
        if len(rest) != 2:
            raise ArmError(404, 'InvalidResourceType', 'The resource type could not be found.')
        if method == 'GET':
            self.count('methods', 'virtualMachines.get')
            vm = self.s['vms'].get(key)
            if not vm:
                raise not_found('Microsoft.Compute/virtualMachines', name, ctx['rg'])
            return 200, self.vm_view(vm, expand), {}, 'virtualMachines.get'
        if method == 'DELETE':
            return self.vm_delete(name, ctx)
        if method == 'PATCH':
            return self.vm_patch(name, data, ctx)
        if method == 'PUT':
            return self.vm_put(name, data, ctx)
        raise ArmError(405, 'MethodNotAllowed', 'The method is not allowed.')

    def _validate_vm(self, name, data, ctx):
        if not NAME_RX.match(name) or name.endswith('.') or name.endswith('-'):
            raise invalid("The VM name '%s' is invalid." % name, 'vmName')
        loc = data.get('location')
        if not loc:
            raise ArmError(400, 'LocationRequired',
                           'The location property is required for this definition.')
        if loc.lower().replace(' ', '') != self.cfg['location']:
            raise ArmError(400, 'LocationNotAvailableForResourceType',
                           "The provided location '%s' is not available for resource type "
                           "'Microsoft.Compute/virtualMachines'." % loc)
        zones = data.get('zones') or []
        if not isinstance(zones, list) or len(zones) != 1 or zones[0] not in self.cfg['zones']:
            raise invalid("The zone(s) '%s' for resource 'Microsoft.Compute/virtualMachines/%s'"
                          " is not supported. The supported zones for location '%s' are '%s'."
                          % (','.join(map(str, zones)), name, loc, ','.join(self.cfg['zones'])),
                          'zones')
        tags = data.get('tags') or {}
        if len(tags) > 50:
            raise ArmError(400, 'InvalidTemplate', 'A resource can have at most 50 tags.')
        for k, v in tags.items():
            if re.search(r'[<>%&\\?/]', k) or len(k) > 512 or len(str(v)) > 256:
                raise ArmError(400, 'InvalidTagNameCharacters',
                               "The tag names '%s' have reserved characters '<,>,%%,&,\\,?,/' or "
                               "control characters." % k)
        props = data.get('properties')
        if not isinstance(props, dict):
            raise invalid('Required parameter \'properties\' is missing (null).', 'properties')
        size = (props.get('hardwareProfile') or {}).get('vmSize')
        if size not in VM_SIZES:
            raise invalid("The value %s provided for the VM size is not valid. The valid sizes "
                          "in the current region are: %s." % (size, ', '.join(sorted(VM_SIZES))),
                          'hardwareProfile.vmSize')
        storage = props.get('storageProfile') or {}
        img = storage.get('imageReference') or {}
        if img.get('id'):
            if not re.match(r'^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/'
                            r'Microsoft\.Compute/(images|galleries)/', img['id'], re.I):
                raise invalid("The value '%s' of parameter 'imageReference.id' is invalid."
                              % img['id'], 'imageReference.id')
        else:
            ref = '%s:%s:%s' % (img.get('publisher'), img.get('offer'), img.get('sku'))
            if ref not in IMAGES or not img.get('version'):
                raise ArmError(404, 'PlatformImageNotFound',
                               "The platform image '%s:%s' is not available. Verify that all "
                               "fields in the storage profile are correct. For more details "
                               "about storage profile information, please refer to "
                               "https://aka.ms/storageprofile" % (ref, img.get('version')),
                               target='imageReference')
        disk = storage.get('osDisk') or {}
        if disk.get('createOption') != 'FromImage':
            raise invalid("The value of parameter osDisk.createOption is invalid.",
                          'osDisk.createOption')
        if disk.get('deleteOption', 'Detach') not in ('Delete', 'Detach'):
            raise invalid('The value of parameter osDisk.deleteOption is invalid.',
                          'osDisk.deleteOption')
        sat = (disk.get('managedDisk') or {}).get('storageAccountType', 'Standard_LRS')
        if sat not in DISK_TYPES:
            raise invalid("Storage account type '%s' is not supported." % sat,
                          'osDisk.managedDisk.storageAccountType')
        osp = props.get('osProfile') or {}
        user = osp.get('adminUsername')
        if not user or not osp.get('computerName'):
            raise invalid('Required parameter \'osProfile.adminUsername\' is missing (null).',
                          'osProfile')
        if user.lower() in ('root', 'admin', 'administrator', 'user', 'guest', 'test'):
            raise ArmError(400, 'InvalidParameter',
                           "The Admin Username specified is not allowed.",
                           target='adminUsername')
        lc = osp.get('linuxConfiguration') or {}
        keys = (lc.get('ssh') or {}).get('publicKeys') or []
        if lc.get('disablePasswordAuthentication') and not keys:
            raise invalid('Authentication using either SSH or by user name and password must be '
                          'enabled in Linux profile.', 'linuxConfiguration')
        if not lc.get('disablePasswordAuthentication') and not osp.get('adminPassword'):
            raise invalid("Required parameter 'adminPassword' is missing (null).",
                          'adminPassword')
        for k in keys:
            if k.get('path') != '/home/%s/.ssh/authorized_keys' % user:
                raise invalid('Destination path for SSH public keys is currently limited to its '
                              'default value /home/%s/.ssh/authorized_keys  due to a known issue '
                              'in Linux provisioning agent.' % user,
                              'linuxConfiguration.ssh.publicKeys.path')
            if not valid_ssh_key(k.get('keyData')):
                raise invalid('The value of parameter linuxConfiguration.ssh.publicKeys.keyData '
                              'is invalid.', 'linuxConfiguration.ssh.publicKeys.keyData')
        net = props.get('networkProfile') or {}
        configs = net.get('networkInterfaceConfigurations') or []
        if not configs and not net.get('networkInterfaces'):
            raise invalid("Required parameter 'networkProfile' is missing (null).",
                          'networkProfile')
        if configs and not net.get('networkApiVersion'):
            raise invalid("Parameter 'networkProfile.networkApiVersion' is required when "
                          "'networkInterfaceConfigurations' is given.",
                          'networkProfile.networkApiVersion')
        if len(configs) > 1:
            raise invalid('The emulator makes one NIC per VM.', 'networkInterfaceConfigurations')
        for c in configs:
            cp = c.get('properties') or {}
            if not c.get('name') or not cp.get('ipConfigurations'):
                raise invalid('A network interface configuration needs a name and an IP '
                              'configuration.', 'networkInterfaceConfigurations')
            if cp.get('deleteOption', 'Detach') not in ('Delete', 'Detach'):
                raise invalid('The value of parameter deleteOption is invalid.', 'deleteOption')
            for ipc in cp['ipConfigurations']:
                ipp = ipc.get('properties') or {}
                sid = (ipp.get('subnet') or {}).get('id') or ''
                if not re.match(r'^/subscriptions/[0-9a-fA-F-]{36}/resourceGroups/[^/]+/'
                                r'providers/Microsoft\.Network/virtualNetworks/[^/]+/subnets/'
                                r'[^/]+$', sid, re.I):
                    raise ArmError(400, 'InvalidResourceReference',
                                   "Resource '%s' referenced by resource "
                                   "'Microsoft.Compute/virtualMachines/%s' was not found."
                                   % (sid, name))
                pipc = ipp.get('publicIPAddressConfiguration')
                if pipc is not None and not pipc.get('name'):
                    raise invalid('A public IP address configuration needs a name.',
                                  'publicIPAddressConfiguration.name')
        return size, zones[0], img

    def _cores_in_use(self):
        return sum(VM_SIZES.get(v['res']['properties']['hardwareProfile']['vmSize'], 0)
                   for v in self.s['vms'].values()
                   if v['res']['properties']['provisioningState'] != 'Failed')

    def vm_put(self, name, data, ctx):
        key = name.lower()
        self.count('put_calls', name)
        self.count('methods', 'virtualMachines.createOrUpdate')
        size, zone, img = self._validate_vm(name, data, ctx)
        props = data['properties']
        group_id = ((props.get('capacityReservation') or {}).get('capacityReservationGroup')
                    or {}).get('id')
        existing = self.s['vms'].get(key)
        if existing:
            return self._vm_put_existing(existing, name, data, zone, img, group_id, ctx)
        if size in self.s['skus'].get(zone, []):
            raise ArmError(409, 'SkuNotAvailable',
                           "The requested VM size for resource 'Following SKUs have failed for "
                           "Capacity Restrictions: %s' is currently not available in location "
                           "'%s' zones '%s'. Please try another size or deploy to a different "
                           "location or zones. See https://aka.ms/azureskunotavailable for "
                           "details." % (size, self.cfg['location'], zone))
        q = self.s['quota']
        if q and q.get('cores') is not None:
            used = self._cores_in_use()
            need = VM_SIZES[size]
            if used + need > q['cores']:
                family = re.sub(r'^Standard_([A-Za-z]+)\d+([a-z]*)_?(v\d)?$',
                                lambda m: 'standard%s%s%sFamily' % (
                                    m.group(1).upper(), m.group(2).upper(),
                                    m.group(3) or ''), size)
                raise ArmError(409, 'OperationNotAllowed',
                               "Operation could not be completed as it results in exceeding "
                               "approved %s Cores quota. Additional details - Deployment Model: "
                               "Resource Manager, Location: %s, Current Limit: %d, Current "
                               "Usage: %d, Additional Required: %d, (Minimum) New Limit "
                               "Required: %d. Setup Alerts when Quota reaches threshold. Learn "
                               "more at https://aka.ms/quotamonitoringalerting ." % (
                                   family, self.cfg['location'], q['cores'], used, need,
                                   used + need))
        rkey = None
        if group_id:
            rkey = self._reservation_for(group_id, size, zone, ctx)
        vm_id = str(uuid.uuid4())
        rid = '%s/providers/Microsoft.Compute/virtualMachines/%s' % (self.rg_id(ctx), name)
        meta = {'zone': zone, 'power': None, 'failure': None, 'group_id': group_id,
                'reservation': list(rkey) if rkey else None, 'created': now()}
        res = {'name': name, 'id': rid, 'type': 'Microsoft.Compute/virtualMachines',
               'location': self.cfg['location'], 'zones': [zone],
               'tags': dict(data.get('tags') or {}),
               'properties': {'vmId': vm_id, 'hardwareProfile': {'vmSize': size},
                              'provisioningState': 'Creating', 'timeCreated': ts()}}
        res['properties']['storageProfile'] = self._make_disk(name, props, zone, rid, meta, ctx)
        res['properties']['osProfile'] = self._os_profile(props['osProfile'])
        res['properties']['networkProfile'] = self._make_nic(name, props, zone, rid, meta, ctx)
        if rkey:
            self.s['reservations'][rkey]['meta']['associated'].append(rid)
        op = self.new_operation(['vm', key])
        meta['op'] = op
        self.s['vms'][key] = {'res': res, 'meta': meta}
        self.count('vms_created', name)
        self.schedule(float(self.cfg['vm_create_delay']), {'kind': 'vm_allocate', 'name': key,
                                                           'op': op})
        return 201, self.vm_view(self.s['vms'][key], ''), \
            self.lro_headers(op, ctx['sub'], ctx['base'], ctx['api']), \
            'virtualMachines.createOrUpdate'

    def _os_profile(self, osp):
        out = {'computerName': osp['computerName'], 'adminUsername': osp['adminUsername'],
               'linuxConfiguration': copy.deepcopy(osp.get('linuxConfiguration') or {}),
               'secrets': [], 'allowExtensionOperations': True,
               'requireGuestProvisionSignal': True}
        out['linuxConfiguration'].setdefault('provisionVMAgent', True)
        return out

    def _make_disk(self, name, props, zone, rid, meta, ctx):
        storage = copy.deepcopy(props['storageProfile'])
        disk = storage['osDisk']
        dname = disk.get('name') or '%s_OsDisk_1_%s' % (name, uuid.uuid4().hex)
        did = '%s/providers/Microsoft.Compute/disks/%s' % (self.rg_id(ctx), dname)
        sat = (disk.get('managedDisk') or {}).get('storageAccountType', 'Standard_LRS')
        self.s['disks'][dname.lower()] = {
            'name': dname, 'id': did, 'type': 'Microsoft.Compute/disks',
            'location': self.cfg['location'], 'zones': [zone], 'sku': {'name': sat},
            'managedBy': rid,
            'properties': {'osType': 'Linux', 'diskSizeGB': disk.get('diskSizeGB', 30),
                           'diskState': 'Attached', 'provisioningState': 'Succeeded',
                           'timeCreated': ts(), 'creationData': {'createOption': 'FromImage'}}}
        meta['disk'], meta['disk_delete'] = dname.lower(), disk.get('deleteOption', 'Detach')
        disk.update({'name': dname, 'osType': 'Linux', 'caching': disk.get('caching', 'ReadWrite'),
                     'deleteOption': disk.get('deleteOption', 'Detach'),
                     'diskSizeGB': disk.get('diskSizeGB', 30),
                     'managedDisk': {'storageAccountType': sat, 'id': did}})
        storage['dataDisks'] = []
        return storage

    def _make_nic(self, name, props, zone, rid, meta, ctx):
        net = props['networkProfile']
        if net.get('networkInterfaces'):
            return copy.deepcopy(net)
        c = net['networkInterfaceConfigurations'][0]
        cp = c['properties']
        nic_name = c['name']
        nic_id = '%s/providers/Microsoft.Network/networkInterfaces/%s' % (self.rg_id(ctx),
                                                                            nic_name)
        ipcs = []
        for ipc in cp['ipConfigurations']:
            ipp = ipc.get('properties') or {}
            n = self.s['private_next']
            self.s['private_next'] += 1
            out = {'name': ipc.get('name', 'ipconfig1'),
                   'id': '%s/ipConfigurations/%s' % (nic_id, ipc.get('name', 'ipconfig1')),
                   'properties': {'privateIPAddress': '10.0.%d.%d' % (n // 250, n % 250 + 4),
                                  'privateIPAllocationMethod': 'Dynamic',
                                  'subnet': {'id': ipp['subnet']['id']},
                                  'primary': ipp.get('primary', True),
                                  'privateIPAddressVersion': 'IPv4',
                                  'provisioningState': 'Succeeded'}}
            pipc = ipp.get('publicIPAddressConfiguration')
            if pipc is not None:
                ip_name = pipc['name']
                ip_id = '%s/providers/Microsoft.Network/publicIPAddresses/%s' % (
                    self.rg_id(ctx), ip_name)
                pp = pipc.get('properties') or {}
                self.s['ips'][ip_name.lower()] = {
                    'name': ip_name, 'id': ip_id, 'type': 'Microsoft.Network/publicIPAddresses',
                    'location': self.cfg['location'], 'zones': [zone],
                    'sku': pipc.get('sku') or {'name': 'Standard', 'tier': 'Regional'},
                    'properties': {'provisioningState': 'Succeeded',
                                   'publicIPAddressVersion': 'IPv4',
                                   'publicIPAllocationMethod':
                                       pp.get('publicIPAllocationMethod', 'Static'),
                                   'idleTimeoutInMinutes': 4,
                                   'ipConfiguration': {'id': out['id']}}}
                meta['ip'], meta['ip_delete'] = ip_name.lower(), pp.get('deleteOption', 'Detach')
                out['properties']['publicIPAddress'] = {'id': ip_id}
            ipcs.append(out)
        self.s['nics'][nic_name.lower()] = {
            'name': nic_name, 'id': nic_id, 'type': 'Microsoft.Network/networkInterfaces',
            'location': self.cfg['location'],
            'properties': {'provisioningState': 'Succeeded', 'ipConfigurations': ipcs,
                           'primary': True, 'virtualMachine': {'id': rid},
                           'macAddress': '00-0D-3A-%02X-%02X-%02X' % tuple(
                               random.randrange(256) for _ in range(3)),
                           'nicType': 'Standard', 'enableAcceleratedNetworking': False}}
        meta['nic'], meta['nic_delete'] = nic_name.lower(), cp.get('deleteOption', 'Detach')
        return {'networkApiVersion': net['networkApiVersion'],
                'networkInterfaceConfigurations': copy.deepcopy(
                    net['networkInterfaceConfigurations']),
                'networkInterfaces': [{'id': nic_id, 'properties': {
                    'primary': True, 'deleteOption': cp.get('deleteOption', 'Detach')}}]}

    def _vm_put_existing(self, vm, name, data, zone, img, group_id, ctx):
        res, meta = vm['res'], vm['meta']
        props = res['properties']
        if props['provisioningState'] == 'Deleting':
            raise ArmError(409, 'AnotherOperationInProgress',
                           "Operation 'createOrUpdate' is not allowed on VM '%s' since the VM is "
                           "marked for deletion. You can only retry the Delete operation (or "
                           "wait for an ongoing one to complete)." % name)
        if zone != meta['zone']:
            raise ArmError(409, 'PropertyChangeNotAllowed',
                           "Changing property 'zones' is not allowed.", target='zones')
        old_img = {k: v for k, v in props['storageProfile']['imageReference'].items()
                   if k in ('publisher', 'offer', 'sku', 'version', 'id')}
        if old_img != {k: v for k, v in img.items()
                       if k in ('publisher', 'offer', 'sku', 'version', 'id')}:
            raise ArmError(409, 'PropertyChangeNotAllowed',
                           "Changing property 'imageReference' is not allowed.",
                           target='imageReference')
        new_lc = data['properties']['osProfile'].get('linuxConfiguration') or {}
        old_keys = ((props['osProfile'].get('linuxConfiguration') or {}).get('ssh') or {}) \
            .get('publicKeys')
        if ((new_lc.get('ssh') or {}).get('publicKeys')) != old_keys:
            raise ArmError(409, 'PropertyChangeNotAllowed',
                           "Changing property 'linuxConfiguration.ssh.publicKeys' is not "
                           "allowed.", target='linuxConfiguration.ssh.publicKeys')
        res['tags'] = dict(data.get('tags') or {})
        state = props['provisioningState']
        self.count('idempotent_replays')
        self.count('dedup_hits')
        if state in ('Creating', 'Updating'):
            op = meta['op']   # the work under way answers for this PUT too
        elif state == 'Failed':
            # A PUT of a VM whose allocation failed tries the allocation again.
            op = self.new_operation(['vm', name.lower()])
            meta['op'] = op
            props['provisioningState'] = 'Creating'
            if group_id and not meta.get('reservation'):
                rkey = self._reservation_for(group_id, props['hardwareProfile']['vmSize'], zone,
                                             ctx)
                meta['group_id'], meta['reservation'] = group_id, list(rkey)
                self.s['reservations'][rkey]['meta']['associated'].append(res['id'])
            self.schedule(float(self.cfg['vm_create_delay']),
                          {'kind': 'vm_allocate', 'name': name.lower(), 'op': op})
        else:
            op = self.new_operation(['vm', name.lower()])
            self.finish_operation(op, 'Succeeded')
        return 200, self.vm_view(vm, ''), self.lro_headers(op, ctx['sub'], ctx['base'],
                                                           ctx['api']), \
            'virtualMachines.createOrUpdate'

    def vm_delete(self, name, ctx):
        key = name.lower()
        self.count('delete_calls', name)
        self.count('methods', 'virtualMachines.delete')
        vm = self.s['vms'].get(key)
        if not vm:
            return 204, None, {}, 'virtualMachines.delete'
        props = vm['res']['properties']
        if props['provisioningState'] != 'Deleting':
            if props['provisioningState'] in ('Creating', 'Updating'):
                self.finish_operation(vm['meta']['op'], 'Canceled', {
                    'code': 'OperationPreempted',
                    'message': 'Operation execution has been preempted by a more recent '
                               'operation.'})
            props['provisioningState'] = 'Deleting'
            vm['meta']['power'] = 'stopping' if vm['meta'].get('power') else None
            op = self.new_operation()
            vm['meta']['delete_op'] = op
            self.schedule(float(self.cfg['vm_delete_delay']), {'kind': 'vm_deleted',
                                                               'name': key, 'op': op})
        op = vm['meta']['delete_op']
        return 202, None, self.lro_headers(op, ctx['sub'], ctx['base'], ctx['api']), \
            'virtualMachines.delete'

    def vm_patch(self, name, data, ctx):
        self.count('methods', 'virtualMachines.update')
        vm = self.s['vms'].get(name.lower())
        if not vm:
            raise not_found('Microsoft.Compute/virtualMachines', name, ctx['rg'])
        res, meta = vm['res'], vm['meta']
        props = data.get('properties') or {}
        if 'capacityReservation' in props:
            grp = ((props['capacityReservation'] or {}).get('capacityReservationGroup') or {})
            if grp.get('id') is None and meta.get('group_id'):
                rkey = meta.get('reservation')
                r = self.s['reservations'].get(tuple(rkey)) if rkey else None
                allocated = meta.get('power') == 'running'
                if r and allocated and r['res']['sku']['capacity'] > 0:
                    raise ArmError(409, 'OperationNotAllowed',
                                   "The VM '%s' cannot be disassociated from capacity "
                                   "reservation group '%s' while it is allocated and the "
                                   "reservation '%s' still reserves capacity. Deallocate the "
                                   "VM, or update the reserved quantity to zero first." % (
                                       name, meta['group_id'].rsplit('/', 1)[1],
                                       r['res']['name']))
                if r:
                    for lst in (r['meta']['associated'], r['meta']['allocated']):
                        if res['id'] in lst:
                            lst.remove(res['id'])
                meta['group_id'], meta['reservation'] = None, None
            elif grp.get('id'):
                raise ArmError(409, 'OperationNotAllowed',
                               'Joining a capacity reservation group needs a deallocated VM.')
        if 'tags' in data:
            res['tags'] = dict(data['tags'] or {})
        op = self.new_operation(['vm', name.lower()])
        if res['properties']['provisioningState'] == 'Succeeded':
            res['properties']['provisioningState'] = 'Updating'
        self.schedule(float(self.cfg['vm_update_delay']), {'kind': 'vm_updated',
                                                           'name': name.lower(), 'op': op})
        return 200, self.vm_view(vm, ''), self.lro_headers(op, ctx['sub'], ctx['base'],
                                                           ctx['api']), 'virtualMachines.update'

    # ---- capacity reservations -----------------------------------------------------------
    def _group_from_id(self, group_id):
        m = re.match(r'^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Compute/'
                     r'capacityReservationGroups/([^/]+)$', group_id or '', re.I)
        return m.group(1).lower() if m else None

    def _reservation_for(self, group_id, size, zone, ctx):
        g = self._group_from_id(group_id)
        if not g or g not in self.s['groups']:
            raise invalid("Capacity reservation group '%s' was not found." % group_id,
                          'capacityReservation.capacityReservationGroup.id')
        group = self.s['groups'][g]
        if zone not in (group.get('zones') or []):
            raise invalid("The capacity reservation group '%s' does not cover zone '%s'."
                          % (group['name'], zone),
                          'capacityReservation.capacityReservationGroup.id')
        matching = [(k, r) for k, r in sorted(self.s['reservations'].items())
                    if k[0] == g and r['res']['sku']['name'] == size and
                    r['res']['zones'] == [zone] and
                    r['res']['properties']['provisioningState'] == 'Succeeded']
        if not matching:
            raise ArmError(409, 'OperationNotAllowed',
                           "The capacity reservation group '%s' has no capacity reservation "
                           "for VM size '%s' in zone '%s'." % (group['name'], size, zone))
        for k, r in matching:  # one with room first; else over-allocate the first
            if len(r['meta']['allocated']) < r['res']['sku']['capacity']:
                return k
        return matching[0][0]

    def groups(self, method, rest, query, data, ctx):
        gpath = self.rg_id(ctx) + '/providers/Microsoft.Compute/capacityReservationGroups'
        if len(rest) == 1:
            self.count('methods', 'capacityReservationGroups.list')
            items = [self.group_view(g, '') for _, g in sorted(self.s['groups'].items())]
            return 200, self.page(items, query, ctx, gpath), {}, 'capacityReservationGroups.list'
        name = rest[1]
        g = name.lower()
        if len(rest) >= 3 and rest[2].lower() == 'capacityreservations':
            if g not in self.s['groups']:
                raise ArmError(404, 'ParentResourceNotFound',
                               "Can not perform requested operation on nested resource. Parent "
                               "resource '%s' not found." % name)
            return self.reservations(method, g, rest[3:], query, data, ctx,
                                     '%s/%s/capacityReservations' % (gpath, name))
        if len(rest) != 2:
            raise ArmError(404, 'InvalidResourceType', 'The resource type could not be found.')
        if method == 'GET':
            self.count('methods', 'capacityReservationGroups.get')
            if g not in self.s['groups']:
                raise not_found('Microsoft.Compute/capacityReservationGroups', name, ctx['rg'])
            return 200, self.group_view(self.s['groups'][g], qget(query, '$expand') or ''), {}, \
                'capacityReservationGroups.get'
        if method == 'PUT':
            self.count('methods', 'capacityReservationGroups.createOrUpdate')
            if not NAME_RX.match(name):
                raise invalid("The capacity reservation group name '%s' is invalid." % name)
            loc = (data.get('location') or '').lower().replace(' ', '')
            if loc != self.cfg['location']:
                raise ArmError(400, 'LocationNotAvailableForResourceType',
                               "The provided location '%s' is not available." % loc)
            zones = data.get('zones') or []
            bad = [z for z in zones if z not in self.cfg['zones']]
            if bad:
                raise invalid("The zone(s) '%s' are not supported." % ','.join(bad), 'zones')
            existing = self.s['groups'].get(g)
            if existing:
                if existing.get('zones') and set(zones) != set(existing['zones']):
                    raise ArmError(409, 'PropertyChangeNotAllowed',
                                   "Changing property 'zones' is not allowed.", target='zones')
                existing['tags'] = dict(data.get('tags') or {})
                return 200, self.group_view(existing, ''), {}, \
                    'capacityReservationGroups.createOrUpdate'
            self.s['groups'][g] = {
                'name': name, 'location': self.cfg['location'],
                'id': '%s/%s' % (gpath, name),
                'type': 'Microsoft.Compute/capacityReservationGroups',
                'tags': dict(data.get('tags') or {}), 'zones': list(zones),
                'properties': {}}
            return 201, self.group_view(self.s['groups'][g], ''), {}, \
                'capacityReservationGroups.createOrUpdate'
        if method == 'DELETE':
            self.count('methods', 'capacityReservationGroups.delete')
            if g not in self.s['groups']:
                return 204, None, {}, 'capacityReservationGroups.delete'
            if any(k[0] == g for k in self.s['reservations']):
                raise ArmError(409, 'OperationNotAllowed',
                               "The capacity reservation group '%s' cannot be deleted while it "
                               "holds capacity reservations." % name)
            del self.s['groups'][g]
            return 200, None, {}, 'capacityReservationGroups.delete'
        raise ArmError(405, 'MethodNotAllowed', 'The method is not allowed.')

    def group_view(self, group, expand):
        out = copy.deepcopy(group)
        out['properties']['capacityReservations'] = [
            {'id': r['res']['id']} for k, r in sorted(self.s['reservations'].items())
            if k[0] == group['name'].lower()]
        out['properties']['virtualMachinesAssociated'] = [
            {'id': v['res']['id']} for v in self.s['vms'].values()
            if self._group_from_id(v['meta'].get('group_id')) == group['name'].lower()]
        return out

    def reservation_view(self, r, expand):
        out = copy.deepcopy(r['res'])
        out['properties']['virtualMachinesAssociated'] = [{'id': i}
                                                          for i in r['meta']['associated']]
        if 'instanceview' in (expand or '').lower():
            state = out['properties']['provisioningState']
            statuses = [{'code': 'ProvisioningState/%s' % state.lower(), 'level': 'Info',
                         'displayStatus': 'Provisioning %s' % state.lower()}]
            if state == 'Failed' and r['meta'].get('failure'):
                statuses = [{'code': 'ProvisioningState/failed/%s' % r['meta']['failure']['code'],
                             'level': 'Error', 'displayStatus': 'Provisioning failed',
                             'message': r['meta']['failure']['message']}]
            out['properties']['instanceView'] = {
                'utilizationInfo': {'currentCapacity': r['res']['sku']['capacity'],
                                    'virtualMachinesAllocated': [
                                        {'id': i} for i in r['meta']['allocated']]},
                'statuses': statuses}
        return out

    def reservations(self, method, g, rest, query, data, ctx, path):
        if not rest:
            if method != 'GET':
                raise ArmError(405, 'MethodNotAllowed', 'The method is not allowed.')
            self.count('methods', 'capacityReservations.list')
            items = [self.reservation_view(r, '') for k, r in sorted(self.s['reservations']
                                                                      .items()) if k[0] == g]
            return 200, self.page(items, query, ctx, path), {}, 'capacityReservations.list'
        name = rest[0]
        key = (g, name.lower())
        r = self.s['reservations'].get(key)
        if method == 'GET':
            self.count('methods', 'capacityReservations.get')
            if not r:
                raise not_found('Microsoft.Compute/capacityReservationGroups/%s/'
                                'capacityReservations' % self.s['groups'][g]['name'], name,
                                ctx['rg'])
            return 200, self.reservation_view(r, qget(query, '$expand')), {}, \
                'capacityReservations.get'
        if method == 'DELETE':
            self.count('methods', 'capacityReservations.delete')
            if not r:
                return 204, None, {}, 'capacityReservations.delete'
            if r['meta']['associated']:
                raise ArmError(409, 'OperationNotAllowed',
                               "Capacity reservation '%s' cannot be deleted while virtual "
                               "machines are associated with it: %s. Remove the association "
                               "of each VM first." % (name, ', '.join(
                                   i.rsplit('/', 1)[1] for i in r['meta']['associated'])))
            if r['res']['properties']['provisioningState'] != 'Deleting':
                r['res']['properties']['provisioningState'] = 'Deleting'
                op = self.new_operation()
                r['meta']['delete_op'] = op
                self.schedule(float(self.cfg['reservation_delete_delay']),
                              {'kind': 'res_deleted', 'key': list(key), 'op': op})
            return 202, None, self.lro_headers(r['meta']['delete_op'], ctx['sub'], ctx['base'],
                                               ctx['api']), 'capacityReservations.delete'
        if method == 'PATCH':
            self.count('methods', 'capacityReservations.update')
            if not r:
                raise not_found('capacityReservations', name, ctx['rg'])
            sku = data.get('sku') or {}
            if 'capacity' in sku:
                cap = sku['capacity']
                if not isinstance(cap, int) or cap < 0:
                    raise invalid('The value of sku.capacity is invalid.', 'sku.capacity')
                r['res']['sku']['capacity'] = cap
            if 'tags' in data:
                r['res']['tags'] = dict(data['tags'] or {})
            op = self.new_operation(['reservation', list(key)])
            self.schedule(0.02, {'kind': 'op_done', 'op': op})
            return 200, self.reservation_view(r, ''), self.lro_headers(
                op, ctx['sub'], ctx['base'], ctx['api']), 'capacityReservations.update'
        if method != 'PUT':
            raise ArmError(405, 'MethodNotAllowed', 'The method is not allowed.')
        self.count('methods', 'capacityReservations.createOrUpdate')
        self.count('reservation_put_calls', name)
        if not NAME_RX.match(name):
            raise invalid("The capacity reservation name '%s' is invalid." % name)
        loc = (data.get('location') or '').lower().replace(' ', '')
        if loc != self.cfg['location']:
            raise ArmError(400, 'LocationNotAvailableForResourceType',
                           "The provided location '%s' is not available." % loc)
        sku = data.get('sku') or {}
        if sku.get('name') not in VM_SIZES:
            raise invalid("The value %s provided for the sku name is not valid." %
                          sku.get('name'), 'sku.name')
        cap = sku.get('capacity')
        if not isinstance(cap, int) or isinstance(cap, bool) or cap < 0 or cap > 5000:
            raise invalid('The value of sku.capacity is invalid.', 'sku.capacity')
        zones = data.get('zones') or []
        group = self.s['groups'][g]
        if len(zones) != 1 or zones[0] not in (group.get('zones') or []):
            raise invalid("A capacity reservation needs one zone of its group's zones (%s)."
                          % ','.join(group.get('zones') or []), 'zones')
        if r:
            if r['res']['zones'] != zones:
                raise ArmError(409, 'PropertyChangeNotAllowed',
                               "Changing property 'zones' is not allowed.", target='zones')
            if r['res']['sku']['name'] != sku['name']:
                raise ArmError(409, 'PropertyChangeNotAllowed',
                               "Changing property 'sku.name' is not allowed.", target='sku.name')
            self.count('idempotent_replays')
            self.count('dedup_hits')
            r['res']['tags'] = dict(data.get('tags') or {})
            state = r['res']['properties']['provisioningState']
            if state == 'Creating':
                op = r['meta']['op']
            elif state == 'Failed':
                op = self.new_operation(['reservation', list(key)])
                r['meta']['op'] = op
                r['res']['sku']['capacity'] = cap
                r['res']['properties']['provisioningState'] = 'Creating'
                self.schedule(float(self.cfg['reservation_create_delay']),
                              {'kind': 'res_ready', 'key': list(key), 'op': op, 'units': cap})
            else:
                op = self.new_operation(['reservation', list(key)])
                self.finish_operation(op, 'Succeeded')
            return 200, self.reservation_view(r, ''), self.lro_headers(
                op, ctx['sub'], ctx['base'], ctx['api']), 'capacityReservations.createOrUpdate'
        op = self.new_operation(['reservation', list(key)])
        res = {'name': name, 'id': '%s/%s' % (path, name), 'location': self.cfg['location'],
               'type': 'Microsoft.Compute/capacityReservationGroups/capacityReservations',
               'tags': dict(data.get('tags') or {}), 'sku': {'name': sku['name'],
                                                             'capacity': cap},
               'zones': list(zones),
               'properties': {'platformFaultDomainCount': 1, 'reservationId': str(uuid.uuid4()),
                              'provisioningState': 'Creating', 'timeCreated': ts()}}
        self.s['reservations'][key] = {'res': res, 'meta': {
            'associated': [], 'allocated': [], 'op': op, 'failure': None}}
        self.schedule(float(self.cfg['reservation_create_delay']),
                      {'kind': 'res_ready', 'key': list(key), 'op': op, 'units': cap, 'new': True})
        return 201, self.reservation_view(self.s['reservations'][key], ''), self.lro_headers(
            op, ctx['sub'], ctx['base'], ctx['api']), 'capacityReservations.createOrUpdate'

    # ---- control API ---------------------------------------------------------------------
    def plant_vm(self, d):
        """A VM made behind cloudbrain's back (no operation, no capacity), in the given
        subscription and resource group (the ones lists are scoped by)."""
        ctx = {'sub': d.get('subscription', '00000000-0000-0000-0000-000000000000'),
               'rg': d.get('resource_group', 'cloudbrain'), 'base': '', 'api': ''}
        name = d['name']
        zone = str(d.get('zone', self.cfg['zones'][0]))
        rid = '%s/providers/Microsoft.Compute/virtualMachines/%s' % (self.rg_id(ctx), name)
        created = d.get('timeCreated') or ts(now() - float(d.get('age_seconds', 0)))
        nic_name = name + '-nic'
        nic_id = '%s/providers/Microsoft.Network/networkInterfaces/%s' % (self.rg_id(ctx),
                                                                            nic_name)
        self.s['nics'][nic_name.lower()] = {
            'name': nic_name, 'id': nic_id, 'type': 'Microsoft.Network/networkInterfaces',
            'location': self.cfg['location'],
            'properties': {'provisioningState': 'Succeeded', 'ipConfigurations': [{
                'name': 'ipconfig1', 'id': nic_id + '/ipConfigurations/ipconfig1',
                'properties': {'privateIPAddress': '10.9.0.%d' % (len(self.s['nics']) % 250 + 4),
                               'primary': True}}], 'virtualMachine': {'id': rid}}}
        self.s['vms'][name.lower()] = {
            'res': {'name': name, 'id': rid, 'type': 'Microsoft.Compute/virtualMachines',
                    'location': self.cfg['location'], 'zones': [zone],
                    'tags': dict(d.get('tags') or {}),
                    'properties': {'vmId': str(uuid.uuid4()),
                                   'hardwareProfile': {'vmSize': d.get('vmSize',
                                                                       'Standard_D2s_v5')},
                                   'provisioningState': d.get('provisioningState', 'Succeeded'),
                                   'timeCreated': created,
                                   'storageProfile': {'imageReference': {
                                       'publisher': 'Canonical', 'offer': 'ubuntu-24_04-lts',
                                       'sku': 'server', 'version': 'latest'}, 'osDisk': {}},
                                   'osProfile': {'computerName': name,
                                                 'adminUsername': 'azureuser',
                                                 'linuxConfiguration': {}},
                                   'networkProfile': {'networkInterfaces': [
                                       {'id': nic_id, 'properties': {'primary': True,
                                                                     'deleteOption': 'Delete'}}]}}},
            'meta': {'zone': zone, 'power': d.get('power', 'running'), 'failure': None,
                     'group_id': None, 'reservation': None, 'created': now(), 'op': None,
                     'nic': nic_name.lower(), 'nic_delete': 'Delete'}}
        return self.state_vm(self.s['vms'][name.lower()])

    def state_vm(self, v):
        res, meta = v['res'], v['meta']
        ip = self.s['ips'].get(meta.get('ip') or '')
        keys = ((res['properties']['osProfile'].get('linuxConfiguration') or {}).get('ssh')
                or {}).get('publicKeys') or []
        return {'name': res['name'], 'id': res['id'], 'vmId': res['properties']['vmId'],
                'zone': meta['zone'], 'sshKeys': [k.get('keyData') for k in keys],
                'adminUsername': res['properties']['osProfile'].get('adminUsername'),
                'image': res['properties']['storageProfile'].get('imageReference'),
                'vmSize': res['properties']['hardwareProfile']['vmSize'],
                'provisioningState': res['properties']['provisioningState'],
                'powerState': meta.get('power'), 'tags': res['tags'],
                'timeCreated': res['properties']['timeCreated'],
                'nic': meta.get('nic'), 'publicIp': meta.get('ip'),
                'ipAddress': ip['properties'].get('ipAddress') if ip else None,
                'osDisk': meta.get('disk'),
                'capacityReservationGroup': meta.get('group_id'),
                'reservation': meta['reservation'][1] if meta.get('reservation') else None,
                'failure': meta.get('failure')}

    def state_reservations(self):
        return [{'group': self.s['groups'][k[0]]['name'], 'name': r['res']['name'],
                 'id': r['res']['id'], 'reservationId': r['res']['properties']['reservationId'],
                 'timeCreated': r['res']['properties']['timeCreated'],
                 'zone': r['res']['zones'][0], 'vmSize': r['res']['sku']['name'],
                 'capacity': r['res']['sku']['capacity'],
                 'provisioningState': r['res']['properties']['provisioningState'],
                 'tags': r['res']['tags'], 'associated': [i.rsplit('/', 1)[1]
                                                          for i in r['meta']['associated']],
                 'allocated': [i.rsplit('/', 1)[1] for i in r['meta']['allocated']]}
                for k, r in sorted(self.s['reservations'].items())]

    def state(self):
        return {'instances': [self.state_vm(v) for _, v in sorted(self.s['vms'].items())],
                'nics': sorted(n['name'] for n in self.s['nics'].values()),
                'public_ips': sorted(n['name'] for n in self.s['ips'].values()),
                'disks': sorted(n['name'] for n in self.s['disks'].values()),
                'groups': [{'name': g['name'], 'zones': g.get('zones'), 'tags': g['tags']}
                           for g in self.s['groups'].values()],
                'reservations': self.state_reservations(),
                'operations': len(self.s['operations']),
                'capacity': self.s['capacity'], 'skus': self.s['skus'],
                'quota': self.s['quota'], 'faults': self.s['faults'],
                'counters': self.s['counters'], 'config': self.s['config']}

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
            if p == 'reset' and method == 'POST':
                unknown = [k for k in (data.get('config') or {}) if k not in DEFAULT_CONFIG]
                if unknown:
                    return 400, {'error': 'unknown config keys: %s' % ', '.join(unknown)}
                self.reset(data.get('config'))
                return 200, {'ok': True}
            if p == 'config':
                if method == 'POST':
                    unknown = [k for k in data if k not in DEFAULT_CONFIG]
                    if unknown:
                        return 400, {'error': 'unknown config keys: %s' % ', '.join(unknown)}
                    self.s['config'].update(data)
                return 200, self.s['config']
            if p == 'clients':
                if method == 'POST':
                    for k in ('tenant', 'client_id', 'client_secret'):
                        if not data.get(k):
                            return 400, {'error': '%s is required' % k}
                    self.s['clients'][(data['tenant'], data['client_id'])] = \
                        data['client_secret']
                    return 200, {'ok': True}
                if method == 'DELETE':
                    self.s['clients'] = {k: v for k, v in self.s['clients'].items()
                                         if k[1] != (data.get('client_id') or
                                                     qget(query, 'client_id'))}
                    return 200, {'ok': True}
                return 200, {'clients': [{'tenant': t, 'client_id': c}
                                         for t, c in self.s['clients']]}
            if p == 'identities':
                if method == 'POST':
                    if not data.get('client_id'):
                        return 400, {'error': 'client_id is required'}
                    self.s['identities'][data['client_id']] = True
                    return 200, {'ok': True}
                if method == 'DELETE':
                    self.s['identities'].pop(data.get('client_id') or qget(query, 'client_id'),
                                             None)
                    return 200, {'ok': True}
                return 200, {'identities': sorted(self.s['identities']),
                             'system': self.cfg['imds_system_identity']}
            if p == 'tokens' and method == 'POST':
                tok = data.get('token') or secrets.token_urlsafe(32)
                exp = data.get('expires_in', None)
                entry = self.s['tokens'].get(tok) or {'principal': data.get('principal',
                                                                            'static')}
                entry['expires'] = None if exp is None else now() + float(exp)
                self.s['tokens'][tok] = entry
                return 200, {'token': tok, 'expires': entry['expires']}
            if p == 'tokens/expire' and method == 'POST':
                hit = [e for e in self.s['tokens'].values()
                       if not data.get('principal') or e['principal'] == data['principal']]
                for e in hit:
                    e['expires'] = now()
                return 200, {'expired': len(hit)}
            if p == 'tokens' and method == 'GET':
                return 200, {'tokens': [{'token': k[:12] + '...', 'principal': v['principal'],
                                         'expires': v['expires']}
                                        for k, v in self.s['tokens'].items()]}
            if p == 'capacity':
                if method == 'POST':
                    zones = data.get('zones') or [data.get('zone')]
                    if not zones or None in zones:
                        return 400, {'error': 'zone or zones is required'}
                    code = data.get('code', 'ZonalAllocationFailed')
                    if code not in ALLOCATION_MESSAGES:
                        return 400, {'error': 'code must be one of %s' %
                                     ', '.join(ALLOCATION_MESSAGES)}
                    for z in zones:
                        z = str(z)
                        if 'remaining' in data and data['remaining'] is None:
                            self.s['capacity'].pop(z, None)
                            continue
                        self.s['capacity'][z] = {'remaining': int(data.get('remaining', 0)),
                                                 'code': code}
                return 200, self.s['capacity']
            if p == 'skus':
                if method == 'POST':
                    z, size = str(data.get('zone')), data.get('size')
                    if not data.get('zone') or size not in VM_SIZES:
                        return 400, {'error': 'zone and a known size are required'}
                    lst = self.s['skus'].setdefault(z, [])
                    if data.get('available', False):
                        if size in lst:
                            lst.remove(size)
                    elif size not in lst:
                        lst.append(size)
                return 200, self.s['skus']
            if p == 'quota':
                if method == 'POST':
                    self.s['quota'] = None if data.get('cores') is None else \
                        {'cores': int(data['cores'])}
                return 200, {'quota': self.s['quota']}
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
                    f.setdefault('status', 429)
                    f.setdefault('retry_after', 1)
                    if f['status'] != 429:
                        return 400, {'error': 'throttle status must be 429 (ARM throttles '
                                              'with 429 only)'}
                if f['kind'] == 'error':
                    f.setdefault('status', 500)
                    if int(f['status']) < 500:
                        return 400, {'error': 'fail status must be 5xx'}
                if f['kind'] == 'stall':
                    f.setdefault('seconds', 5)
                if f.get('when', 'before') not in ('before', 'after'):
                    return 400, {'error': 'when must be before or after'}
                for k in ('path_regex', 'query_regex'):
                    if f.get(k):
                        try:
                            re.compile(f[k])
                        except re.error as exc:
                            return 400, {'error': 'bad %s: %s' % (k, exc)}
                self.s['seq'] += 1
                f['id'] = self.s['seq']
                self.s['faults'].append(f)
                return 200, f
            if p == 'instances' and method == 'POST':
                if isinstance(data.get('instances'), list):
                    return 200, {'instances': [self.plant_vm(d) for d in data['instances']]}
                if not data.get('name'):
                    return 400, {'error': 'name is required'}
                return 200, self.plant_vm(data)
            if p == 'instances' and method == 'GET':
                return 200, {'instances': [self.state_vm(v)
                                           for _, v in sorted(self.s['vms'].items())]}
            if p == 'reservations' and method == 'GET':
                return 200, {'reservations': self.state_reservations()}
            if p == 'state' and method == 'GET':
                return 200, self.state()
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


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    server_version = 'Microsoft-HTTPAPI/2.0'
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

    def _send(self, status, obj, headers=None, raw=None, ctype='application/json; charset=utf-8'):
        self._status = status
        self._finish_entry()
        data = raw if raw is not None else (b'' if obj is None else json.dumps(obj).encode())
        self.send_response(status)
        if data:
            self.send_header('Content-Type', ctype)
        self.send_header('Content-Length', str(len(data)))
        self.send_header('Cache-Control', 'no-cache')
        self.send_header('x-ms-request-id', str(uuid.uuid4()))
        self.send_header('x-ms-correlation-request-id', str(uuid.uuid4()))
        crid = self.headers.get('x-ms-client-request-id')
        if crid:
            self.send_header('x-ms-client-request-id', crid)
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

    def _finish_entry(self):
        with self.server.emu.lock:
            self._entry['status'] = self._status
            self._entry['duration_ms'] = round((now() - self._t0) * 1000, 2)
            self._entry['route'] = self._route

    def _handle(self, method):
        emu = self.server.emu
        self._status, self._route, self._t0 = None, None, now()
        url = urllib.parse.urlsplit(self.path)
        path, query = url.path, urllib.parse.parse_qs(url.query, keep_blank_values=True)
        body = self._read_body()
        self._entry = emu.log_request(method, path, url.query,
                                      {'user_agent': self.headers.get('User-Agent', '')})
        base = self._base()
        if method == 'PUT' and body:
            # The zone a PUT asks for, for tests that follow zone fallback in the log.
            try:
                zones = json.loads(body).get('zones')
                if isinstance(zones, list) and zones:
                    self._entry['zone'] = str(zones[0])
            except (ValueError, AttributeError):
                pass
        try:
            if path.startswith('/_emulator/'):
                status, obj = emu.control(method, path, query, body)
                self._send(status, obj)
                return
            m = re.match(r'^/([^/]+)/oauth2/v2\.0/token$', path)
            if m and method == 'POST':
                self._route = 'entra.token'
                if self._faults(method, path, 'before'):
                    return
                form = urllib.parse.parse_qs(body.decode('utf-8', 'replace'),
                                             keep_blank_values=True)
                with emu.lock:
                    status, obj = emu.token_endpoint(m.group(1), form)
                self._send(status, obj, {'Cache-Control': 'no-store, no-cache'})
                return
            if path == '/metadata/identity/oauth2/token' and method == 'GET':
                self._route = 'imds.token'
                if self._faults(method, path, 'before'):
                    return
                with emu.lock:
                    status, obj = emu.imds_token(self.headers, query)
                self._send(status, obj)
                return
            if not path.startswith('/subscriptions/'):
                raise ArmError(404, 'NotFound', 'The requested path %s was not found.' % path)
            if self._faults(method, path, 'before'):
                return
            with emu.lock:
                status, obj, hdrs, route = emu.arm(method, path, query, body, self.headers, base)
                self._route = route
                hdrs = dict(hdrs)
                hdrs.update(emu.ratelimit_headers(method))
            if self._faults(method, path, 'after'):
                return
            self._send(status, obj, hdrs)
        except ArmError as exc:
            try:
                with emu.lock:
                    hdrs = dict(exc.headers)
                    if path.startswith('/subscriptions/'):
                        hdrs.update(emu.ratelimit_headers(method))
                self._send(exc.status, exc.body(), hdrs)
            except (BrokenPipeError, ConnectionResetError):
                self._status = 'client-gone'
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self._status = 'client-gone'
            self.close_connection = True
        except Exception as exc:  # an emulator bug: answer the way ARM answers a 500
            import traceback
            traceback.print_exc()
            self._send(500, {'error': {'code': 'InternalServerError',
                                       'message': 'emulator: %r' % exc}})
        finally:
            self._finish_entry()

    def _faults(self, method, path, phase):
        """Applies the faults of this phase; True when the answer has been given (or lost)."""
        emu = self.server.emu
        fired = emu.take_faults(method, path, phase, urllib.parse.urlsplit(self.path).query)
        if not fired:
            return False
        suffix = '' if phase == 'before' else '-after'
        self._entry['fault'] = self._entry.get('fault', []) + [f['kind'] + suffix for f in fired]
        for f in fired:
            if f['kind'] == 'stall':
                time.sleep(float(f.get('seconds', 5)))
        for f in fired:
            if f['kind'] == 'drop':
                self._drop(bool(f.get('reset')))
                return True
        if phase == 'after':
            return False
        for f in fired:
            if f['kind'] == 'throttle':
                with emu.lock:
                    emu.count('throttled')
                write = method != 'GET'
                hdrs = {'Retry-After': str(int(f.get('retry_after', 1)))}
                hdrs['x-ms-ratelimit-remaining-subscription-%s' % ('writes' if write
                                                                    else 'reads')] = '0'
                if write and '/virtualMachines/' in path:
                    hdrs['x-ms-ratelimit-remaining-resource'] = \
                        'Microsoft.Compute/PutVM3Min;0,Microsoft.Compute/PutVM30Min;0'
                self._send(429, {'error': {
                    'code': 'TooManyRequests' if not write else 'OperationNotAllowed',
                    'message': f.get('message') or (
                        'The server rejected the request because too many requests have been '
                        'received for this subscription.' if write else
                        'The request is being throttled as the limit has been reached for '
                        'operation type - Read_ObservationWindow_00:05:00. For more '
                        'information, see - https://aka.ms/srpthrottlinglimits')}}, hdrs)
                return True
            if f['kind'] == 'error':
                code = int(f.get('status', 500))
                arm = {500: ('InternalServerError', 'Encountered internal server error. '
                                                    'Diagnostic information: timestamp '
                                                    '\'%s\'.' % ts()),
                       502: ('BadGateway', 'The gateway did not receive a response in time.'),
                       503: ('ServiceUnavailable', 'The server is currently unavailable. '
                                                   'Please retry later.'),
                       504: ('GatewayTimeout', 'The gateway did not receive a response '
                                               'within the specified time period.')}
                c, msg = arm.get(code, ('InternalServerError', 'Internal error'))
                self._send(code, {'error': {'code': c, 'message': f.get('message', msg)}})
                return True
        return False


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError, socket.timeout)):
            return
        super().handle_error(request, client_address)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=0)
    ap.add_argument('--port-file')
    ap.add_argument('--tls-cert')
    ap.add_argument('--tls-key')
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
    emu = Emulator(config=cfg, verbose=args.verbose)
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
    sys.stderr.write('arm_emulator listening on %s://%s:%d\n' % (emu.scheme, args.host, port))
    sys.stderr.flush()
    try:
        srv.serve_forever(poll_interval=0.2)
    finally:
        stop.set()
        srv.server_close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
