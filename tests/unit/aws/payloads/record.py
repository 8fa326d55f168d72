"""Records the EC2 payloads of tests/unit/aws/payloads/ from the EC2 emulator
(tests/emulators/aws), through boto3, so that every answer here is one a real client parsed.

    python3 record.py      # rewrites the *.xml and imds_*.json files in this folder

Requests are made with boto3 (signed by botocore); each answer's body is saved as it came.
Answers boto3 could not parse would fail the recording.
"""
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, '..', '..', '..', 'emulators', 'aws', 'ec2_emulator.py')
KEY, SECRET = 'AKIAEMULATOREXAMPLE1', 'emulator/secret/KEY/EXAMPLEKEYEXAMPLEKEY'


def main():
    workdir = tempfile.mkdtemp(prefix='ec2-record-')
    port_file = os.path.join(workdir, 'port')
    proc = subprocess.Popen([sys.executable, EMULATOR, '--port', '0', '--port-file', port_file,
                             '--parent-pid', str(os.getpid()), '--config',
                             json.dumps({'pending_delay': 0.2, 'reservation_create_delay': 0.2,
                                         'stopping_delay': 0.2})])
    try:
        for _ in range(100):
            if os.path.exists(port_file) and open(port_file).read().strip():
                break
            time.sleep(0.05)
        base = 'http://127.0.0.1:%s' % open(port_file).read().strip()
        record(base)
    finally:
        proc.terminate()
        proc.wait(10)


def control(base, path, body=None):
    req = urllib.request.Request(base + '/_emulator/' + path, method='POST' if body else 'GET',
                                 data=json.dumps(body).encode() if body else None,
                                 headers={'Content-Type': 'application/json'})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def record(base):
    ec2 = boto3.client('ec2', region_name='eu-west-1', endpoint_url=base,
                       aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                       config=boto3.session.Config(retries={'total_max_attempts': 1}))
    bodies = {}
    ec2.meta.events.register('before-parse.ec2',
                             lambda response_dict, **kw: bodies.__setitem__(
                                 'last', response_dict['body']))

    def save(name, call, *args, **kwargs):
        try:
            call(*args, **kwargs)
        except botocore.exceptions.ClientError:
            pass
        with open(os.path.join(HERE, name), 'wb') as f:
            f.write(bodies['last'])

    tags = [{'Key': 'team', 'Value': 'ci & infra <core>'}, {'Key': 'Name', 'Value':
            'cb-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'},
            {'Key': 'cloudbrain-deployment', 'Value': 'prod-eu'},
            {'Key': 'cloudbrain-instance', 'Value': '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'}]
    run = dict(ImageId='ami-0c1bea58988a98915', InstanceType='m5.large', MinCount=1,
               MaxCount=1, ClientToken='a' * 64, Placement={'AvailabilityZone': 'eu-west-1a'},
               TagSpecifications=[{'ResourceType': 'instance', 'Tags': tags},
                                  {'ResourceType': 'volume', 'Tags': tags}],
               UserData='#cloud-config\n')
    save('run_instances_pending.xml', ec2.run_instances, **run)
    iid = ec2.run_instances(**run)['Instances'][0]['InstanceId']
    time.sleep(0.4)
    save('describe_instances_running.xml', ec2.describe_instances, InstanceIds=[iid])
    save('describe_instances_empty.xml', ec2.describe_instances,
         Filters=[{'Name': 'tag:cloudbrain-deployment', 'Values': ['nobody']}], MaxResults=5)
    for n in range(6):
        ec2.run_instances(ImageId='ami-0c1bea58988a98915', InstanceType='t3.micro', MinCount=1,
                          MaxCount=1, Placement={'AvailabilityZone': 'eu-west-1b'},
                          TagSpecifications=[{'ResourceType': 'instance', 'Tags': [
                              {'Key': 'cloudbrain-deployment', 'Value': 'paged'},
                              {'Key': 'cloudbrain-instance',
                               'Value': '0190a1b2-c3d4-7e5f-8a9b-%012d' % n}]}])
    paged = [{'Name': 'tag:cloudbrain-deployment', 'Values': ['paged']}]
    save('describe_instances_page1.xml', ec2.describe_instances, Filters=paged, MaxResults=5)
    token = ec2.describe_instances(Filters=paged, MaxResults=5)['NextToken']
    save('describe_instances_page2.xml', ec2.describe_instances, Filters=paged, MaxResults=5,
         NextToken=token)
    save('terminate_instances.xml', ec2.terminate_instances, InstanceIds=[iid])
    time.sleep(0.4)
    save('describe_instances_terminated.xml', ec2.describe_instances, InstanceIds=[iid])
    save('describe_images.xml', ec2.describe_images, Owners=['self', 'amazon'],
         Filters=[{'Name': 'name', 'Values': ['cloudbrain-ci-*']}])
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=4)
    ccr = dict(InstanceType='m5.large', InstancePlatform='Linux/UNIX',
               AvailabilityZone='eu-west-1b', InstanceCount=3, EndDateType='limited',
               EndDate=end, InstanceMatchCriteria='targeted', ClientToken='b' * 64,
               TagSpecifications=[{'ResourceType': 'capacity-reservation', 'Tags': [
                   {'Key': 'Name', 'Value': 'cbr-0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'},
                   {'Key': 'cloudbrain-deployment', 'Value': 'prod-eu'},
                   {'Key': 'cloudbrain-reservation',
                    'Value': '0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'},
                   {'Key': 'run', 'Value': 'nightly-42'}]}])
    save('create_capacity_reservation.xml', ec2.create_capacity_reservation, **ccr)
    crid = ec2.create_capacity_reservation(**ccr)['CapacityReservation']['CapacityReservationId']
    time.sleep(0.4)
    ec2.run_instances(ImageId='ami-0c1bea58988a98915', InstanceType='m5.large', MinCount=1,
                      MaxCount=1, CapacityReservationSpecification={
                          'CapacityReservationTarget': {'CapacityReservationId': crid}})
    save('describe_capacity_reservations.xml', ec2.describe_capacity_reservations,
         Filters=[{'Name': 'tag:cloudbrain-deployment', 'Values': ['prod-eu']}], MaxResults=100)
    save('cancel_capacity_reservation.xml', ec2.cancel_capacity_reservation,
         CapacityReservationId=crid)

    # Errors, as EC2 words them.
    control(base, 'capacity', {'zone': 'eu-west-1c', 'remaining': 0})
    save('error_insufficient_instance_capacity.xml', ec2.run_instances,
         ImageId='ami-0c1bea58988a98915', InstanceType='m5.large', MinCount=1, MaxCount=1,
         Placement={'AvailabilityZone': 'eu-west-1c'})
    save('error_unsupported.xml', ec2.run_instances, ImageId='ami-0c1bea58988a98915',
         InstanceType='p4d.24xlarge', MinCount=1, MaxCount=1,
         Placement={'AvailabilityZone': 'eu-west-1c'})
    save('error_not_found.xml', ec2.describe_instances, InstanceIds=['i-0123456789abcdef0'])
    save('error_ami_not_found.xml', ec2.run_instances, ImageId='ami-0123456789abcdef0',
         InstanceType='m5.large', MinCount=1, MaxCount=1)
    control(base, 'quota', {'metric': 'vcpus', 'limit': 4})
    save('error_vcpu_limit.xml', ec2.run_instances, ImageId='ami-0c1bea58988a98915',
         InstanceType='m5.2xlarge', MinCount=1, MaxCount=1)
    control(base, 'quota', {'metric': 'vcpus', 'limit': None})
    save('error_idempotent_mismatch.xml', ec2.run_instances, **dict(run, InstanceType='t3.micro'))
    control(base, 'throttle', {'count': 1})
    save('error_request_limit.xml', ec2.describe_instances)
    control(base, 'fail', {'count': 1, 'status': 503})
    save('error_unavailable.xml', ec2.describe_instances)
    wrong = boto3.client('ec2', region_name='eu-west-1', endpoint_url=base,
                         aws_access_key_id=KEY, aws_secret_access_key='not-the-secret',
                         config=boto3.session.Config(retries={'total_max_attempts': 1}))
    wrong.meta.events.register('before-parse.ec2',
                               lambda response_dict, **kw: bodies.__setitem__(
                                   'last', response_dict['body']))
    save('error_signature_does_not_match.xml', wrong.describe_instances)
    unknown = boto3.client('ec2', region_name='eu-west-1', endpoint_url=base,
                           aws_access_key_id='AKIANOBODYKNOWS00000', aws_secret_access_key='x',
                           config=boto3.session.Config(retries={'total_max_attempts': 1}))
    unknown.meta.events.register('before-parse.ec2',
                                 lambda response_dict, **kw: bodies.__setitem__(
                                     'last', response_dict['body']))
    save('error_auth_failure.xml', unknown.describe_instances)
    control(base, 'config', {'clock_offset': 1200})
    save('error_request_expired.xml', ec2.describe_instances)
    control(base, 'config', {'clock_offset': 0})

    token = urllib.request.urlopen(urllib.request.Request(
        base + '/latest/api/token', method='PUT',
        headers={'X-aws-ec2-metadata-token-ttl-seconds': '60'})).read().decode()
    body = urllib.request.urlopen(urllib.request.Request(
        base + '/latest/meta-data/iam/security-credentials/cloudbrain-role',
        headers={'X-aws-ec2-metadata-token': token})).read()
    with open(os.path.join(HERE, 'imds_credentials.json'), 'wb') as f:
        f.write(body)


if __name__ == '__main__':
    main()
