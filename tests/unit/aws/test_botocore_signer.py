"""providers/aws/sigv4 against botocore's own SigV4 signer (Debian's python3-botocore), on
generated requests: random methods, paths (UTF-8, spaces, dot segments, doubled slashes), query
strings, headers (case, inner and outer whitespace), bodies, session tokens, regions, services
and times. Every request is signed by both; canonical request, string to sign and
Authorization must be the same byte for byte.

    /usr/bin/python3 test_botocore_signer.py PATH/TO/aws_sigv4_tool [COUNT]
"""
import json
import random
import subprocess
import sys
import unittest
import urllib.parse

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

TOOL = None
COUNT = 500


def random_text(rng, alphabet, lo, hi):
    return ''.join(rng.choice(alphabet) for _ in range(rng.randint(lo, hi)))


SEGMENT_CHARS = 'abcXYZ019-_.~ %+=&@:;,!$\'()*\u00e9\u1234\U0001f600'
QUERY_CHARS = 'abcXYZ019-_.~ /+=&?%\u00e9\u1234'
VALUE_CHARS = 'abc XYZ 019 -_.~/+=;,:"\'\t\u00e9'


def random_request(rng):
    segments = []
    for _ in range(rng.randint(0, 5)):
        segments.append(rng.choice(['.', '..', '', random_text(rng, SEGMENT_CHARS, 1, 8)]))
    raw_path = '/' + '/'.join(segments) + rng.choice(['', '/'])
    path = urllib.parse.quote(raw_path, safe='/')
    params = [(random_text(rng, QUERY_CHARS, 1, 6), random_text(rng, QUERY_CHARS, 0, 8))
              for _ in range(rng.randint(0, 4))]
    # Sent already in SigV4's encoding, as an SDK sends a query.
    query = '&'.join('%s=%s' % (urllib.parse.quote(k, safe='-_.~'),
                                urllib.parse.quote(v, safe='-_.~')) for k, v in params)
    host = rng.choice(['ec2.eu-west-1.amazonaws.com', '127.0.0.1:8443',
                       'example.amazonaws.com'])
    headers = [('Host', host)]
    names = set()
    for _ in range(rng.randint(0, 5)):
        name = rng.choice(['X-Custom', 'content-type', 'My-Header', 'X-Amz-Meta-A', 'Accept',
                           'X-Trace-Id', 'Zeta'])
        if name.lower() in names:
            continue
        names.add(name.lower())
        value = rng.choice([' ', '', '  ']) + random_text(rng, VALUE_CHARS, 1, 20) + \
            rng.choice(['', ' ', '  \t'])
        headers.append((rng.choice([name, name.upper(), name.lower()]), value))
    body = random_text(rng, VALUE_CHARS + '\n&=', 0, 200) if rng.random() < 0.7 else ''
    return {
        'method': rng.choice(['GET', 'POST', 'PUT', 'DELETE']),
        'path': path, 'query': query, 'headers': headers, 'body': body,
        'access_key': 'AKIA' + random_text(rng, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16, 16),
        'secret': random_text(rng, 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789/+', 40, 40),
        'token': random_text(rng, 'abcdefABCDEF0123456789/+=', 40, 300)
        if rng.random() < 0.4 else '',
        'region': rng.choice(['us-east-1', 'eu-west-1', 'ap-southeast-4', 'cn-north-1']),
        'service': rng.choice(['ec2', 'service', 'sts']),
        'time': '%04d%02d%02dT%02d%02d%02dZ' % (rng.randint(2015, 2035), rng.randint(1, 12),
                                               rng.randint(1, 28), rng.randint(0, 23),
                                               rng.randint(0, 59), rng.randint(0, 59)),
    }


def botocore_sign(r):
    url = 'https://%s%s%s' % (dict(r['headers'])['Host'], r['path'],
                              '?' + r['query'] if r['query'] else '')
    req = AWSRequest(method=r['method'], url=url, data=r['body'].encode('utf-8'))
    for k, v in r['headers']:
        req.headers[k] = v
    req.context['timestamp'] = r['time']
    req.headers['X-Amz-Date'] = r['time']
    if r['token']:
        req.headers['X-Amz-Security-Token'] = r['token']
    auth = SigV4Auth(Credentials(r['access_key'], r['secret'], r['token'] or None),
                     r['service'], r['region'])
    creq = auth.canonical_request(req)
    sts = auth.string_to_sign(req, creq)
    signature = auth.signature(sts, req)
    signed = auth.signed_headers(auth.headers_to_sign(req))
    scope = '%s/%s/%s/aws4_request' % (r['time'][:8], r['region'], r['service'])
    authz = 'AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s' % (
        r['access_key'], scope, signed, signature)
    return {'canonical_request': creq, 'string_to_sign': sts, 'signed_headers': signed,
            'authorization': authz}


class BotocoreSigner(unittest.TestCase):
    def test_generated_requests_sign_alike(self):
        rng = random.Random(20240601)
        requests = [random_request(rng) for _ in range(COUNT)]
        proc = subprocess.run([TOOL], input=''.join(json.dumps(r) + '\n' for r in requests),
                              capture_output=True, text=True, timeout=120, check=True)
        answers = [json.loads(line) for line in proc.stdout.splitlines()]
        self.assertEqual(len(answers), len(requests))
        differences = []
        for r, ours in zip(requests, answers):
            theirs = botocore_sign(r)
            if ours != theirs:
                differences.append((r, ours, theirs))
        self.assertEqual(differences[:3], [], '%d of %d requests signed differently'
                         % (len(differences), len(requests)))
        # The generator did reach the cases that matter.
        self.assertTrue(any(r['token'] for r in requests))
        self.assertTrue(any('..' in r['path'] for r in requests))
        self.assertTrue(any('%F0%9F' in r['path'] for r in requests))
        self.assertTrue(any('\t' in v for r in requests for _, v in r['headers']))


if __name__ == '__main__':
    TOOL = sys.argv.pop(1)
    if len(sys.argv) > 1:
        COUNT = int(sys.argv.pop(1))
    unittest.main()
