"""The EC2 emulator (tests/emulators/aws/ec2_emulator.py) as a child process of a test, with
boto3 clients pointed at it. stdlib only, but for `client()`, which needs boto3.
"""
from emulator_process import EmulatorProcess, emulator_path

EC2_EMULATOR = emulator_path('aws', 'ec2_emulator.py')
REGION = 'eu-west-1'
# The access key the emulator knows after every reset.
ACCESS_KEY = 'AKIAEMULATOREXAMPLE1'
SECRET_KEY = 'emulator/secret/KEY/EXAMPLEKEYEXAMPLEKEY'


class Ec2EmulatorProcess(EmulatorProcess):
    def __init__(self, *extra, workdir=None):
        super().__init__(*extra, workdir=workdir, script=EC2_EMULATOR)

    def client(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY, session_token=None,
               retries=1, **config):
        """A boto3 EC2 client for this emulator; `retries` is botocore's total_max_attempts."""
        import boto3
        import botocore.config
        return boto3.client(
            'ec2', region_name=REGION, endpoint_url=self.base, aws_access_key_id=access_key,
            aws_secret_access_key=secret_key, aws_session_token=session_token,
            config=botocore.config.Config(retries={'total_max_attempts': retries,
                                                   'mode': 'standard'}, **config))
