"""The EC2 emulator (tests/emulators/aws) checked against clients written by others:

  * AwsCli drives the real `aws` command line (awscli) at the emulator: every call cloudbrain
    makes, its waiters and its pagination, errors as awscli reports them, and credentials taken
    from the emulator's IMDSv2 the way awscli finds them.
  * Boto3 checks every operation cloudbrain uses through boto3: shapes, idempotency, paging,
    reservations, capacity, quotas, throttling, eventual consistency, SigV4 refusals, IMDSv2.
  * MotoSecondOpinion sends the same instance calls to moto_server and to the emulator and
    compares what comes back (moto has no capacity reservations in server mode).

Uses the python3 on the PATH with boto3, awscli and moto; the emulator is its own process.
"""
import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..',
                                'support'))
import botocore.credentials  # noqa: E402
import botocore.exceptions  # noqa: E402
import botocore.utils  # noqa: E402
from ec2_emulator_process import (ACCESS_KEY, REGION, SECRET_KEY,  # noqa: E402
                                  Ec2EmulatorProcess)

IMAGE = 'ami-0c1bea58988a98915'
FAST = {'pending_delay': 0.2, 'stopping_delay': 0.2, 'reservation_create_delay': 0.2}
EMU = None


def setUpModule():
    global EMU
    EMU = Ec2EmulatorProcess('--config', json.dumps(FAST)).start()


def tearDownModule():
    EMU.stop()
    with open(os.path.join(EMU.dir, 'emulator.log'), errors='replace') as f:
        log = f.read()
    if 'Traceback' in log:
        raise AssertionError('the emulator failed:\n' + log[-20000:])


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response['Error']['Code'], e.response['ResponseMetadata']['HTTPStatusCode'], \
            e.response['Error']['Message']
    raise AssertionError('no error')


def wait_for(predicate, timeout=10, what='condition'):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


def tags_of(resource):
    return {t['Key']: t['Value'] for t in resource.get('Tags', [])}


class Boto3(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        EMU.control('POST', 'reset', {'config': FAST})
        self.ec2 = EMU.client()

    def launch(self, **extra):
        args = dict(ImageId=IMAGE, InstanceType='m5.large', MinCount=1, MaxCount=1,
                    Placement={'AvailabilityZone': 'eu-west-1a'})
        args.update(extra)
        return self.ec2.run_instances(**args)['Instances'][0]

    def test_run_describe_terminate_with_every_parameter_cloudbrain_sends(self):
        user_data = '#cloud-config\nusers:\n  - default\n'
        tags = [{'Key': 'Name', 'Value': 'cb-1'}, {'Key': 'cloudbrain-deployment', 'Value': 'd'},
                {'Key': 'team', 'Value': 'ci & <infra>'}]
        i = self.launch(ClientToken='x' * 64, UserData=user_data,
                        InstanceInitiatedShutdownBehavior='terminate', Placement={},
                        NetworkInterfaces=[{'DeviceIndex': 0, 'SubnetId': 'subnet-0bbb',
                                            'Groups': ['sg-0123', 'sg-0456'],
                                            'AssociatePublicIpAddress': True,
                                            'DeleteOnTermination': True}],
                        TagSpecifications=[{'ResourceType': 'instance', 'Tags': tags},
                                           {'ResourceType': 'volume', 'Tags': tags}])
        self.assertRegex(i['InstanceId'], r'^i-[0-9a-f]{17}$')
        self.assertEqual(i['State'], {'Code': 0, 'Name': 'pending'})
        self.assertEqual(i['Placement']['AvailabilityZone'], 'eu-west-1b')  # the subnet's
        self.assertEqual(i['SubnetId'], 'subnet-0bbb')
        self.assertEqual([g['GroupId'] for g in i['SecurityGroups']], ['sg-0123', 'sg-0456'])
        self.assertEqual(i['ClientToken'], 'x' * 64)
        self.assertEqual(tags_of(i), {t['Key']: t['Value'] for t in tags})
        self.assertIsInstance(i['LaunchTime'], datetime.datetime)
        waiter = self.ec2.get_waiter('instance_running')
        waiter.wait(InstanceIds=[i['InstanceId']], WaiterConfig={'Delay': 1, 'MaxAttempts': 20})
        got = self.ec2.describe_instances(InstanceIds=[i['InstanceId']])
        running = got['Reservations'][0]['Instances'][0]
        self.assertEqual(running['State']['Name'], 'running')
        self.assertRegex(running['PublicIpAddress'], r'^198\.1[89]\.')
        self.assertRegex(running['PrivateIpAddress'], r'^10\.0\.')
        planted = {v['id']: v for v in EMU.control('GET', 'instances')['instances']}
        self.assertEqual(planted[i['InstanceId']]['userData'], user_data)
        self.assertEqual(planted[i['InstanceId']]['volume_tags']['team'], 'ci & <infra>')
        self.assertEqual(planted[i['InstanceId']]['shutdownBehavior'], 'terminate')
        changes = self.ec2.terminate_instances(InstanceIds=[i['InstanceId']])
        self.assertEqual(changes['TerminatingInstances'][0]['CurrentState']['Name'],
                         'shutting-down')
        self.ec2.get_waiter('instance_terminated').wait(
            InstanceIds=[i['InstanceId']], WaiterConfig={'Delay': 1, 'MaxAttempts': 20})
        gone = self.ec2.describe_instances(InstanceIds=[i['InstanceId']])
        self.assertEqual(gone['Reservations'][0]['Instances'][0]['StateReason']['Code'],
                         'Client.UserInitiatedShutdown')

    def test_client_token_makes_one_instance(self):
        first = self.launch(ClientToken='job-1/eu-west-1a')
        again = self.launch(ClientToken='job-1/eu-west-1a')
        self.assertEqual(first['InstanceId'], again['InstanceId'])
        self.assertEqual(len(EMU.control('GET', 'instances')['instances']), 1)
        self.assertEqual(EMU.control('GET', 'counters')['dedup_hits'], 1)
        code, status, _ = error_code(self.launch, ClientToken='job-1/eu-west-1a',
                                     InstanceType='t3.micro')
        self.assertEqual((code, status), ('IdempotentParameterMismatch', 400))
        code, _, _ = error_code(self.launch, ClientToken='t' * 65)
        self.assertEqual(code, 'InvalidParameterValue')

    def test_filters_and_pagination(self):
        EMU.control('POST', 'config', {'max_page_size': 4})
        for n in range(11):
            self.launch(TagSpecifications=[{'ResourceType': 'instance', 'Tags': [
                {'Key': 'cloudbrain-deployment', 'Value': 'paged' if n < 9 else 'other'},
                {'Key': 'n', 'Value': str(n)}]}])
        pages = list(self.ec2.get_paginator('describe_instances').paginate(
            Filters=[{'Name': 'tag:cloudbrain-deployment', 'Values': ['paged']},
                     {'Name': 'instance-state-name', 'Values': ['pending', 'running']}],
            PaginationConfig={'PageSize': 1000}))
        self.assertEqual([len([i for r in p['Reservations'] for i in r['Instances']])
                          for p in pages], [4, 4, 1])
        found = sorted(int(tags_of(i)['n']) for p in pages for r in p['Reservations']
                       for i in r['Instances'])
        self.assertEqual(found, list(range(9)))
        wild = self.ec2.describe_instances(Filters=[{'Name': 'tag:n', 'Values': ['1?']}])
        self.assertEqual(sorted(tags_of(i)['n'] for r in wild['Reservations']
                                for i in r['Instances']), ['10'])
        self.assertEqual(error_code(self.ec2.describe_instances,
                                    Filters=[{'Name': 'no-such-filter', 'Values': ['x']}])[0],
                         'InvalidParameterValue')
        self.assertEqual(error_code(self.ec2.describe_instances, MaxResults=3)[0],
                         'InvalidParameterValue')

    def test_images_by_name_and_owner(self):
        got = self.ec2.describe_images(Owners=['self'], Filters=[
            {'Name': 'name', 'Values': ['cloudbrain-ci-*']},
            {'Name': 'state', 'Values': ['available']}])['Images']
        self.assertEqual(sorted(i['Name'] for i in got),
                         ['cloudbrain-ci-2024-01', 'cloudbrain-ci-2024-02'])
        self.assertTrue(all(i['OwnerId'] == '123456789012' for i in got))
        amazon = self.ec2.describe_images(Owners=['amazon'])['Images']
        self.assertEqual([i['ImageOwnerAlias'] for i in amazon], ['amazon'])
        self.assertEqual(error_code(self.launch, ImageId='ami-0123456789abcdef0')[0],
                         'InvalidAMIID.NotFound')
        self.assertEqual(error_code(self.launch, ImageId='ubuntu')[0], 'InvalidAMIID.Malformed')

    def test_capacity_reservations(self):
        end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=2)
        args = dict(InstanceType='m5.large', InstancePlatform='Linux/UNIX',
                    AvailabilityZone='eu-west-1b', InstanceCount=2, EndDateType='limited',
                    EndDate=end, InstanceMatchCriteria='targeted', ClientToken='r-1',
                    TagSpecifications=[{'ResourceType': 'capacity-reservation', 'Tags': [
                        {'Key': 'cloudbrain-deployment', 'Value': 'd'},
                        {'Key': 'run', 'Value': 'nightly'}]}])
        cr = self.ec2.create_capacity_reservation(**args)['CapacityReservation']
        self.assertEqual(self.ec2.create_capacity_reservation(**args)['CapacityReservation']
                         ['CapacityReservationId'], cr['CapacityReservationId'])
        self.assertEqual(cr['State'], 'pending')
        self.assertEqual(cr['TotalInstanceCount'], 2)
        self.assertEqual(cr['EndDateType'], 'limited')
        self.assertEqual(abs((cr['EndDate'] - end).total_seconds()) < 1, True)
        crid = cr['CapacityReservationId']

        def active():
            got = self.ec2.describe_capacity_reservations(CapacityReservationIds=[crid])
            return got['CapacityReservations'][0]['State'] == 'active'
        wait_for(active, what='the reservation to be active')
        # Instances launched into it take its places; the third is refused.
        target = {'CapacityReservationTarget': {'CapacityReservationId': crid}}
        a = self.launch(Placement={}, CapacityReservationSpecification=target)
        self.assertEqual(a['Placement']['AvailabilityZone'], 'eu-west-1b')
        self.assertEqual(a['CapacityReservationId'], crid)
        self.launch(Placement={}, CapacityReservationSpecification=target)
        self.assertEqual(error_code(self.launch, Placement={},
                                    CapacityReservationSpecification=target)[0],
                         'ReservationCapacityExceeded')
        self.assertEqual(error_code(self.launch, InstanceType='t3.micro', Placement={},
                                    CapacityReservationSpecification=target)[0],
                         'InvalidParameterValue')
        listed = self.ec2.describe_capacity_reservations(
            Filters=[{'Name': 'tag:run', 'Values': ['nightly']},
                     {'Name': 'state', 'Values': ['active']}])['CapacityReservations']
        self.assertEqual([(r['CapacityReservationId'], r['AvailableInstanceCount'])
                          for r in listed], [(crid, 0)])
        self.assertTrue(self.ec2.cancel_capacity_reservation(CapacityReservationId=crid)
                        ['Return'])
        self.assertEqual(self.ec2.describe_capacity_reservations(
            CapacityReservationIds=[crid])['CapacityReservations'][0]['State'], 'cancelled')
        self.assertEqual(error_code(self.ec2.cancel_capacity_reservation,
                                    CapacityReservationId=crid)[0], 'IncorrectState')
        self.assertEqual(error_code(self.ec2.describe_capacity_reservations,
                                    CapacityReservationIds=['cr-0123456789abcdef0'])[0],
                         'InvalidCapacityReservationId.NotFound')

    def test_capacity_unsupported_zones_and_quota(self):
        EMU.control('POST', 'capacity', {'zone': 'eu-west-1a', 'remaining': 1})
        self.launch()
        code, status, message = error_code(self.launch)
        self.assertEqual((code, status), ('InsufficientInstanceCapacity', 500))
        self.assertIn('(eu-west-1a)', message)
        code, status, message = error_code(self.ec2.create_capacity_reservation,
                                           InstanceType='m5.large', InstancePlatform='Linux/UNIX',
                                           AvailabilityZone='eu-west-1a', InstanceCount=1)
        self.assertEqual((code, status), ('InsufficientInstanceCapacity', 500))
        code, status, message = error_code(self.launch, InstanceType='p4d.24xlarge',
                                           Placement={'AvailabilityZone': 'eu-west-1c'})
        self.assertEqual((code, status), ('Unsupported', 400))
        self.assertIn('eu-west-1a, eu-west-1b', message)
        EMU.control('POST', 'quota', {'metric': 'vcpus', 'limit': 4})
        code, status, message = error_code(self.launch, InstanceType='m5.2xlarge',
                                           Placement={'AvailabilityZone': 'eu-west-1b'})
        self.assertEqual((code, status), ('VcpuLimitExceeded', 400))
        EMU.control('POST', 'quota', {'metric': 'instances', 'limit': 1})
        code, _, _ = error_code(self.launch, Placement={'AvailabilityZone': 'eu-west-1b'})
        self.assertEqual(code, 'InstanceLimitExceeded')

    def test_unknown_parameters_and_values_are_refused_as_ec2_does(self):
        ec2 = EMU.client()
        ec2.meta.events.register('before-call.ec2.DescribeInstances',
                                 lambda params, **kw: params['body'].update({'Bogus': '1'}))
        self.assertEqual(error_code(ec2.describe_instances)[0], 'UnknownParameter')
        code, _, message = error_code(self.launch, InstanceType='m5.huge')
        self.assertEqual(code, 'InvalidParameterValue')
        self.assertIn('m5.huge', message)

    def test_throttling_faults_and_lost_answers(self):
        EMU.control('POST', 'throttle', {'count': 2})
        self.assertEqual(error_code(self.ec2.describe_instances)[:2],
                         ('RequestLimitExceeded', 503))
        patient = EMU.client(retries=5)
        patient.describe_instances()  # standard retry mode backs off and gets through
        EMU.control('POST', 'fail', {'count': 1, 'status': 500})
        self.assertEqual(error_code(self.ec2.describe_instances)[:2], ('InternalError', 500))
        # The answer is lost after the launch: retried with the same ClientToken, one VM.
        EMU.control('POST', 'drop', {'count': 1, 'when': 'after', 'action': 'RunInstances'})
        with self.assertRaises(botocore.exceptions.HTTPClientError):
            self.launch(ClientToken='lost-1')
        again = self.launch(ClientToken='lost-1')
        self.assertEqual([v['id'] for v in EMU.control('GET', 'instances')['instances']],
                         [again['InstanceId']])
        log = EMU.control('GET', 'requests')['requests']
        self.assertEqual([e['status'] for e in log if e['route'] == 'RunInstances'],
                         ['dropped', 200])

    def test_eventual_consistency(self):
        EMU.control('POST', 'config', {'consistency_delay': 1.0})
        i = self.launch(TagSpecifications=[{'ResourceType': 'instance', 'Tags': [
            {'Key': 'k', 'Value': 'v'}]}])
        self.assertEqual(error_code(self.ec2.describe_instances,
                                    InstanceIds=[i['InstanceId']])[0],
                         'InvalidInstanceID.NotFound')
        self.assertEqual(error_code(self.ec2.terminate_instances,
                                    InstanceIds=[i['InstanceId']])[0],
                         'InvalidInstanceID.NotFound')
        self.assertEqual(self.ec2.describe_instances(
            Filters=[{'Name': 'tag:k', 'Values': ['v']}])['Reservations'], [])
        wait_for(lambda: self.ec2.describe_instances(
            Filters=[{'Name': 'tag:k', 'Values': ['v']}])['Reservations'], 5,
            'the instance to be visible')
        self.ec2.describe_instances(InstanceIds=[i['InstanceId']])
        self.assertGreaterEqual(EMU.control('GET', 'counters')['consistency_not_found'], 2)

    def test_signatures_are_checked(self):
        self.assertEqual(error_code(EMU.client(secret_key='not-the-secret').describe_instances)
                         [:2], ('SignatureDoesNotMatch', 403))
        self.assertEqual(error_code(EMU.client(access_key='AKIANOBODY0000000000')
                                    .describe_instances)[:2], ('AuthFailure', 401))
        EMU.control('POST', 'config', {'clock_offset': 900})
        self.assertEqual(error_code(self.ec2.describe_instances)[:2], ('RequestExpired', 400))
        EMU.control('POST', 'config', {'clock_offset': 0})
        made = EMU.control('POST', 'credentials', {'access_key_id': 'ASIASESSION000000000',
                                                   'session_token': 'FwoGZXIvYXdzEXAMPLE',
                                                   'expires_in': 2})
        session = EMU.client(access_key=made['access_key_id'],
                             secret_key=made['secret_access_key'],
                             session_token=made['session_token'])
        session.describe_instances()
        self.assertEqual(error_code(EMU.client(access_key=made['access_key_id'],
                                               secret_key=made['secret_access_key'])
                                    .describe_instances)[:2], ('AuthFailure', 401))
        time.sleep(2.1)
        self.assertEqual(error_code(session.describe_instances)[:2], ('RequestExpired', 400))
        log = EMU.control('GET', 'requests')['requests']
        self.assertIn('ASIASESSION000000000', [e.get('access_key') for e in log])

    def test_imdsv2_credentials_work_at_the_ec2_endpoint(self):
        EMU.control('POST', 'config', {'imds_credentials_lifetime': 900})
        fetcher = botocore.utils.InstanceMetadataFetcher(timeout=2, num_attempts=1,
                                                         base_url=EMU.base)
        provider = botocore.credentials.InstanceMetadataProvider(iam_role_fetcher=fetcher)
        creds = provider.load().get_frozen_credentials()
        self.assertTrue(creds.access_key.startswith('ASIA'))
        self.assertTrue(creds.token)
        ec2 = EMU.client(access_key=creds.access_key, secret_key=creds.secret_key,
                         session_token=creds.token)
        ec2.describe_instances()
        c = EMU.control('GET', 'counters')
        self.assertEqual(c['imds_credentials_issued'], 1)
        self.assertGreaterEqual(c['imds_tokens_issued'], 1)
        # Without the IMDSv2 token there is nothing; IMDSv1 is off.
        with self.assertRaises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(EMU.base + '/latest/meta-data/iam/security-credentials/')
        self.assertEqual(err.exception.code, 401)


class AwsCli(unittest.TestCase):
    """The real awscli at the emulator."""

    @classmethod
    def setUpClass(cls):
        cls.aws = shutil.which('aws')
        if not cls.aws:
            raise AssertionError('the aws command line (awscli) is not installed')
        cls.home = tempfile.mkdtemp(prefix='awscli-')

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.home, ignore_errors=True)

    def setUp(self):
        EMU.control('POST', 'reset', {'config': FAST})

    def cli(self, *args, env=None, check=True):
        e = {'PATH': os.environ['PATH'], 'HOME': self.home, 'AWS_DEFAULT_REGION': REGION,
             'AWS_ACCESS_KEY_ID': ACCESS_KEY, 'AWS_SECRET_ACCESS_KEY': SECRET_KEY,
             'AWS_CONFIG_FILE': os.path.join(self.home, 'none'),
             'AWS_SHARED_CREDENTIALS_FILE': os.path.join(self.home, 'none'),
             'AWS_EC2_METADATA_DISABLED': 'true', 'AWS_RETRY_MODE': 'standard',
             'AWS_MAX_ATTEMPTS': '1', 'AWS_PAGER': ''}
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        r = subprocess.run([self.aws, '--endpoint-url', EMU.base, '--output', 'json', 'ec2',
                            *args], capture_output=True, text=True, env=e, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError('aws %s failed (%d): %s' % (' '.join(args), r.returncode,
                                                             r.stderr))
        return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else r

    def test_instances_from_launch_to_termination(self):
        user_data = os.path.join(self.home, 'user-data.yaml')
        with open(user_data, 'w') as f:
            f.write('#cloud-config\n')
        out = self.cli('run-instances', '--image-id', IMAGE, '--instance-type', 'm5.large',
                       '--count', '1', '--client-token', 'cli-1',
                       '--placement', 'AvailabilityZone=eu-west-1c',
                       '--security-group-ids', 'sg-0123',
                       '--user-data', 'file://' + user_data,
                       '--tag-specifications',
                       'ResourceType=instance,Tags=[{Key=Name,Value=cb-cli},'
                       '{Key=cloudbrain-deployment,Value=cli}]',
                       'ResourceType=volume,Tags=[{Key=Name,Value=cb-cli}]')
        iid = out['Instances'][0]['InstanceId']
        self.assertEqual(out['Instances'][0]['Placement']['AvailabilityZone'], 'eu-west-1c')
        self.cli('wait', 'instance-running', '--instance-ids', iid)
        got = self.cli('describe-instances', '--filters',
                       'Name=tag:cloudbrain-deployment,Values=cli',
                       'Name=instance-state-name,Values=running')
        self.assertEqual([i['InstanceId'] for r in got['Reservations'] for i in r['Instances']],
                         [iid])
        planted = EMU.control('GET', 'instances')['instances'][0]
        self.assertEqual(planted['userData'], '#cloud-config\n')
        self.assertEqual(planted['securityGroups'], ['sg-0123'])
        again = self.cli('run-instances', '--image-id', IMAGE, '--instance-type', 'm5.large',
                         '--count', '1', '--client-token', 'cli-1',
                         '--placement', 'AvailabilityZone=eu-west-1c',
                         '--security-group-ids', 'sg-0123',
                         '--user-data', 'file://' + user_data,
                         '--tag-specifications',
                         'ResourceType=instance,Tags=[{Key=Name,Value=cb-cli},'
                         '{Key=cloudbrain-deployment,Value=cli}]',
                         'ResourceType=volume,Tags=[{Key=Name,Value=cb-cli}]')
        self.assertEqual(again['Instances'][0]['InstanceId'], iid)
        term = self.cli('terminate-instances', '--instance-ids', iid)
        self.assertEqual(term['TerminatingInstances'][0]['CurrentState']['Name'],
                         'shutting-down')
        self.cli('wait', 'instance-terminated', '--instance-ids', iid)

    def test_pagination_images_and_queries(self):
        # Pages of 3 whatever awscli asks for: it must follow NextToken to see all 7.
        EMU.control('POST', 'config', {'max_page_size': 3})
        for _ in range(7):
            self.cli('run-instances', '--image-id', IMAGE, '--instance-type', 't3.micro',
                     '--count', '1', '--tag-specifications',
                     'ResourceType=instance,Tags=[{Key=cloudbrain-deployment,Value=paged}]')
        ids = self.cli('describe-instances', '--filters',
                       'Name=tag:cloudbrain-deployment,Values=paged', '--page-size', '5',
                       '--query', 'Reservations[].Instances[].InstanceId')
        self.assertEqual(len(set(ids)), 7)
        names = self.cli('describe-images', '--owners', 'self', '--filters',
                         'Name=name,Values=cloudbrain-ci-*', 'Name=state,Values=available',
                         '--query', 'sort_by(Images, &CreationDate)[-1].Name')
        self.assertEqual(names, 'cloudbrain-ci-2024-02')

    def test_capacity_reservations(self):
        end = (datetime.datetime.now(datetime.timezone.utc) +
               datetime.timedelta(hours=3)).strftime('%Y-%m-%dT%H:%M:%SZ')
        cr = self.cli('create-capacity-reservation', '--instance-type', 'm5.large',
                      '--instance-platform', 'Linux/UNIX', '--availability-zone', 'eu-west-1a',
                      '--instance-count', '3', '--end-date-type', 'limited', '--end-date', end,
                      '--instance-match-criteria', 'targeted', '--client-token', 'cr-cli',
                      '--tag-specifications',
                      'ResourceType=capacity-reservation,Tags=[{Key=run,Value=cli}]')
        crid = cr['CapacityReservation']['CapacityReservationId']
        self.assertEqual(cr['CapacityReservation']['EndDate'][:19], end[:19])
        listed = self.cli('describe-capacity-reservations', '--filters',
                          'Name=tag:run,Values=cli')
        self.assertEqual([r['CapacityReservationId'] for r in listed['CapacityReservations']],
                         [crid])
        self.assertEqual(self.cli('cancel-capacity-reservation', '--capacity-reservation-id',
                                  crid), {'Return': True})

    def test_errors_as_awscli_reports_them(self):
        EMU.control('POST', 'capacity', {'zone': 'eu-west-1b', 'remaining': 0})
        r = self.cli('run-instances', '--image-id', IMAGE, '--instance-type', 'm5.large',
                     '--count', '1', '--placement', 'AvailabilityZone=eu-west-1b', check=False)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn('(InsufficientInstanceCapacity) when calling the RunInstances operation',
                      r.stderr)
        r = self.cli('describe-instances', check=False,
                     env={'AWS_SECRET_ACCESS_KEY': 'wrong'})
        self.assertIn('(SignatureDoesNotMatch)', r.stderr)

    def test_credentials_from_imdsv2(self):
        got = self.cli('describe-instances', env={
            'AWS_ACCESS_KEY_ID': None, 'AWS_SECRET_ACCESS_KEY': None,
            'AWS_EC2_METADATA_DISABLED': None,
            'AWS_EC2_METADATA_SERVICE_ENDPOINT': EMU.base + '/'})
        self.assertEqual(got['Reservations'], [])
        log = EMU.control('GET', 'requests')['requests']
        api = [e for e in log if e['route'] == 'DescribeInstances']
        self.assertTrue(api and api[-1]['access_key'].startswith('ASIA'), api)
        self.assertIn('PUT', [e['method'] for e in log if e['route'] == 'imds'])


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class MotoSecondOpinion(unittest.TestCase):
    """The same instance calls to moto_server and to the emulator, compared."""

    # Fields moto fills that the emulator leaves out, each for a reason: no Windows images,
    # no SR-IOV, and EC2 itself gives StateReason only once an instance is stopping.
    MOTO_ONLY = {'Platform', 'SriovNetSupport', 'StateReason'}

    @classmethod
    def setUpClass(cls):
        moto = shutil.which('moto_server')
        if not moto:
            raise AssertionError('moto_server is not installed')
        cls.port = free_port()
        cls.log = open(os.path.join(EMU.dir, 'moto.log'), 'ab')
        cls.proc = subprocess.Popen([moto, '-H', '127.0.0.1', '-p', str(cls.port)],
                                    stdout=cls.log, stderr=cls.log)
        import boto3
        cls.moto = boto3.client('ec2', region_name=REGION,
                                endpoint_url='http://127.0.0.1:%d' % cls.port,
                                aws_access_key_id='testing', aws_secret_access_key='testing')
        deadline = time.monotonic() + 60
        while True:
            try:
                cls.moto_image = next(i for i in cls.moto.describe_images(
                    Owners=['amazon'])['Images'] if 'Platform' not in i)
                break
            except botocore.exceptions.EndpointConnectionError:
                if time.monotonic() > deadline or cls.proc.poll() is not None:
                    raise AssertionError('moto_server did not start')
                time.sleep(0.2)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(10)
        cls.log.close()

    def setUp(self):
        EMU.control('POST', 'reset', {'config': FAST})
        self.emu = EMU.client()

    def both(self, call, **kwargs):
        """The call at moto and at the emulator; the emulator's image where one is named."""
        theirs = getattr(self.moto, call)(**kwargs)
        if 'ImageId' in kwargs:
            kwargs = dict(kwargs, ImageId=IMAGE)
        ours = getattr(self.emu, call)(**kwargs)
        for r in (theirs, ours):
            r.pop('ResponseMetadata')
        return theirs, ours

    def assertSameShape(self, theirs, ours, path='', skip=frozenset()):
        if isinstance(theirs, dict):
            self.assertIsInstance(ours, dict, path)
            missing = set(theirs) - set(ours) - skip
            self.assertEqual(missing, set(), 'the emulator lacks %s at %s' % (missing, path))
            for k in set(theirs) & set(ours):
                self.assertSameShape(theirs[k], ours[k], path + '/' + k, skip)
        elif isinstance(theirs, list):
            self.assertIsInstance(ours, list, path)
            if theirs and ours:
                self.assertSameShape(theirs[0], ours[0], path + '[0]', skip)
        else:
            self.assertIsInstance(ours, type(theirs), path)

    def test_run_describe_terminate_answer_alike(self):
        tags = [{'Key': 'Name', 'Value': 'cb-moto'}, {'Key': 'cloudbrain-deployment',
                                                      'Value': 'moto'}]
        theirs, ours = self.both('run_instances', ImageId=self.moto_image['ImageId'],
                                 InstanceType='m5.large', MinCount=1, MaxCount=1,
                                 ClientToken='moto-1',
                                 Placement={'AvailabilityZone': 'eu-west-1a'},
                                 TagSpecifications=[{'ResourceType': 'instance', 'Tags': tags}])
        self.assertEqual(set(theirs) - set(ours), set())
        t, o = theirs['Instances'][0], ours['Instances'][0]
        # moto hands out the public address at once; EC2 (and the emulator) once it runs.
        self.assertSameShape(t, o, 'Instance',
                             skip=self.MOTO_ONLY | {'PublicIpAddress', 'Association'})
        self.assertNotIn('PublicIpAddress', o)
        for key in ('State', 'InstanceType', 'ClientToken', 'AmiLaunchIndex', 'Placement'):
            self.assertEqual(t[key]['AvailabilityZone'] if key == 'Placement' else t[key],
                             o[key]['AvailabilityZone'] if key == 'Placement' else o[key], key)
        self.assertEqual(tags_of(t), tags_of(o))

        wait_for(lambda: self.emu.describe_instances(InstanceIds=[o['InstanceId']])
                 ['Reservations'][0]['Instances'][0]['State']['Name'] == 'running')
        by_tag = [{'Name': 'tag:cloudbrain-deployment', 'Values': ['moto']},
                  {'Name': 'instance-state-name', 'Values': ['pending', 'running']}]
        theirs, ours = self.both('describe_instances', Filters=by_tag)
        self.assertEqual(len(theirs['Reservations']), len(ours['Reservations']))
        self.assertSameShape(theirs, ours, 'DescribeInstances', skip=self.MOTO_ONLY)
        self.assertEqual(theirs['Reservations'][0]['Instances'][0]['State'],
                         ours['Reservations'][0]['Instances'][0]['State'])

        theirs = self.moto.terminate_instances(InstanceIds=[t['InstanceId']])
        ours = self.emu.terminate_instances(InstanceIds=[o['InstanceId']])
        for r in (theirs, ours):
            r.pop('ResponseMetadata')
            r['TerminatingInstances'][0].pop('InstanceId')
        self.assertEqual(theirs, ours)

    def test_errors_answer_alike(self):
        for kwargs in ({'InstanceIds': ['i-0123456789abcdef0']},
                       {'InstanceIds': ['i-0123456789abcdef0', 'i-0123456789abcdef1']}):
            self.assertEqual(error_code(self.moto.describe_instances, **kwargs)[:2],
                             error_code(self.emu.describe_instances, **kwargs)[:2])
        self.assertEqual(error_code(self.moto.terminate_instances,
                                    InstanceIds=['i-0123456789abcdef0'])[:2],
                         error_code(self.emu.terminate_instances,
                                    InstanceIds=['i-0123456789abcdef0'])[:2])


if __name__ == '__main__':
    unittest.main()
