#!/usr/bin/env python3
"""Records the emulator_*.json payloads of this folder from tests/emulators/azure.

python3 record.py   (writes next to itself; the emulator runs on a free loopback port)
"""
import base64
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, '..', '..', '..', 'emulators', 'azure', 'arm_emulator.py')
SUB = '00000000-0000-0000-0000-000000000000'
RG = '/subscriptions/%s/resourceGroups/cloudbrain' % SUB
KEY = 'ssh-ed25519 ' + base64.b64encode(struct.pack('>I', 11) + b'ssh-ed25519' +
                                        struct.pack('>I', 32) + bytes(32)).decode() + ' test'


def nic_configuration(name):
    subnet = ('/subscriptions/%s/resourceGroups/net/providers/Microsoft.Network/'
              'virtualNetworks/v/subnets/default' % SUB)
    ip = {'name': 'ipconfig1', 'properties': {
        'subnet': {'id': subnet},
        'publicIPAddressConfiguration': {'name': name + '-ip',
                                         'properties': {'deleteOption': 'Delete'}}}}
    return {'name': name + '-nic', 'properties': {'primary': True, 'deleteOption': 'Delete',
                                                  'ipConfigurations': [ip]}}


def vm_body(name, zone, group=None):
    body = {'location': 'eastus', 'zones': [zone], 'tags': {'cloudbrain-deployment': 'ci'},
            'properties': {
                'hardwareProfile': {'vmSize': 'Standard_D2s_v5'},
                'storageProfile': {'imageReference': {
                    'publisher': 'Canonical', 'offer': 'ubuntu-24_04-lts', 'sku': 'server',
                    'version': 'latest'}, 'osDisk': {
                    'name': name + '-osdisk', 'createOption': 'FromImage',
                    'deleteOption': 'Delete'}},
                'osProfile': {'computerName': name, 'adminUsername': 'azureuser',
                              'linuxConfiguration': {
                                  'disablePasswordAuthentication': True,
                                  'ssh': {'publicKeys': [{
                                      'path': '/home/azureuser/.ssh/authorized_keys',
                                      'keyData': KEY}]}}},
                'networkProfile': {'networkApiVersion': '2020-11-01',
                                   'networkInterfaceConfigurations': [nic_configuration(name)]}}}
    if group:
        body['properties']['capacityReservation'] = {'capacityReservationGroup': {'id': group}}
    return body


def main():
    tmp = tempfile.mkdtemp()
    port_file = os.path.join(tmp, 'port')
    proc = subprocess.Popen([sys.executable, EMULATOR, '--port', '0', '--port-file', port_file,
                             '--config', json.dumps({'page_size': 1}),
                             '--parent-pid', str(os.getpid())])
    try:
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.1)
        base = 'http://127.0.0.1:' + open(port_file).read().strip()

        def req(method, path, body=None, headers=None, form=False):
            data = None
            h = dict(headers or {})
            if form:
                data = urllib.parse.urlencode(body).encode()
            elif body is not None:
                data = json.dumps(body).encode()
                h['Content-Type'] = 'application/json'
            r = urllib.request.Request(path if path.startswith('http') else base + path,
                                       data=data, method=method, headers=h)
            try:
                with urllib.request.urlopen(r) as resp:
                    return resp.status, resp.headers, resp.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.headers, e.read().decode()

        def save(name, text):
            text = text.replace(base, 'https://management.azure.com')
            with open(os.path.join(HERE, 'emulator_' + name + '.json'), 'w') as f:
                f.write(json.dumps(json.loads(text), indent=2) + '\n')

        req('POST', '/_emulator/clients', {'tenant': 't', 'client_id': 'c', 'client_secret': 's'})
        _, _, text = req('POST', '/t/oauth2/v2.0/token', {'grant_type': 'client_credentials',
                                                          'client_id': 'c', 'client_secret': 's',
                                                          'scope': base + '/.default'}, form=True)
        save('entra_token', text)
        token = json.loads(text)['access_token']
        _, _, text = req('POST', '/t/oauth2/v2.0/token', {'grant_type': 'client_credentials',
                                                          'client_id': 'c', 'client_secret': 'x',
                                                          'scope': base + '/.default'}, form=True)
        save('entra_invalid_client', text)
        _, _, text = req('GET', '/metadata/identity/oauth2/token?api-version=2018-02-01&resource='
                         + urllib.parse.quote(base + '/'), headers={'Metadata': 'true'})
        save('imds_token', text)
        auth = {'Authorization': 'Bearer ' + token}
        v = '?api-version=2024-07-01'

        req('POST', '/_emulator/capacity', {'zone': '2', 'remaining': 0})
        _, h, _ = req('PUT', RG + '/providers/Microsoft.Compute/virtualMachines/cb-a' + v,
                      vm_body('cb-a', '2'), auth)
        time.sleep(0.6)
        _, _, text = req('GET', h['Azure-AsyncOperation'], headers=auth)
        save('operation_zonal_allocation_failed', text)
        _, _, text = req('GET', RG + '/providers/Microsoft.Compute/virtualMachines/cb-a' + v +
                         '&$expand=instanceView', headers=auth)
        save('vm_failed_allocation', text)
        _, h, _ = req('PUT', RG + '/providers/Microsoft.Compute/virtualMachines/cb-b' + v,
                      vm_body('cb-b', '1'), auth)
        time.sleep(0.6)
        _, _, text = req('GET', h['Azure-AsyncOperation'], headers=auth)
        save('operation_succeeded', text)
        _, _, text = req('GET', RG + '/providers/Microsoft.Compute/virtualMachines/cb-b' + v +
                         '&$expand=instanceView', headers=auth)
        save('vm_running', text)
        nic = json.loads(text)['properties']['networkProfile']['networkInterfaces'][0]['id']
        _, _, text = req('GET', nic + '?api-version=2024-05-01&$expand=ipConfigurations%2F'
                         'publicIPAddress', headers=auth)
        save('nic_with_public_ip', text)
        _, _, text = req('GET', RG + '/providers/Microsoft.Compute/virtualMachines' + v,
                         headers=auth)
        save('vm_list_page', text)
        req('POST', '/_emulator/skus', {'zone': '3', 'size': 'Standard_D2s_v5'})
        _, _, text = req('PUT', RG + '/providers/Microsoft.Compute/virtualMachines/cb-c' + v,
                         vm_body('cb-c', '3'), auth)
        save('error_sku_not_available', text)
        req('POST', '/_emulator/quota', {'cores': 2})
        _, _, text = req('PUT', RG + '/providers/Microsoft.Compute/virtualMachines/cb-d' + v,
                         vm_body('cb-d', '1'), auth)
        save('error_quota', text)
        req('POST', '/_emulator/throttle', {'count': 1, 'retry_after': 7})
        _, _, text = req('PUT', RG + '/providers/Microsoft.Compute/virtualMachines/cb-d' + v,
                         vm_body('cb-d', '1'), auth)
        save('error_throttled', text)
        _, _, text = req('GET', RG + '/providers/Microsoft.Compute/virtualMachines/nope' + v,
                         headers=auth)
        save('error_not_found', text)
        _, _, text = req('GET', RG + '/providers/Microsoft.Compute/virtualMachines/nope' + v,
                         headers={'Authorization': 'Bearer expired-or-unknown'})
        save('error_invalid_token', text)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == '__main__':
    main()
