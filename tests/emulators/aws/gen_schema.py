"""Writes ec2_schema.json: the request parameters of the EC2 calls the emulator serves, as EC2's
Query API spells them, from botocore's model of the API (data/ec2/2016-11-15/service-2.json).

    python3 gen_schema.py > ec2_schema.json

Each operation maps every parameter pattern ("TagSpecification.N.Tag.N.Key", a list index
written N) to its type ({"type": "string", "enum": [...]}, "integer", "boolean", "timestamp",
...), and lists its required top-level parameters. Names follow botocore's ec2 serializer:
queryName, else locationName with its first letter upper-cased, else the member's name; lists are
flattened as NAME.N.
"""
import json
import sys

import botocore
import botocore.session

OPERATIONS = ['RunInstances', 'DescribeInstances', 'TerminateInstances', 'DescribeImages',
              'CreateCapacityReservation', 'DescribeCapacityReservations',
              'CancelCapacityReservation']
MAX_DEPTH = 10


def serialized_name(member, ref):
    if 'queryName' in ref:
        return ref['queryName']
    if 'locationName' in ref:
        return ref['locationName'][0].upper() + ref['locationName'][1:]
    return member


def flatten(shapes, shape_name, prefix, out, depth=0):
    shape = shapes[shape_name]
    kind = shape['type']
    if depth > MAX_DEPTH:
        return
    if kind == 'structure':
        for member, ref in shape.get('members', {}).items():
            name = serialized_name(member, ref)
            flatten(shapes, ref['shape'], prefix + '.' + name if prefix else name, out, depth + 1)
    elif kind == 'list':
        flatten(shapes, shape['member']['shape'], prefix + '.N', out, depth + 1)
    elif kind == 'map':
        out[prefix + '.N.Key'] = {'type': 'string'}
        out[prefix + '.N.Value'] = {'type': 'string'}
    else:
        entry = {'type': kind}
        if shape.get('enum'):
            entry['enum'] = shape['enum']
        out[prefix] = entry


def main():
    session = botocore.session.get_session()
    model = session.get_service_model('ec2', '2016-11-15')
    shapes = model._shape_resolver._shape_map
    out = {'botocore_version': botocore.__version__, 'api_version': '2016-11-15',
           'operations': {}}
    for op in OPERATIONS:
        input_shape = model.operation_model(op).input_shape
        params = {}
        flatten(shapes, input_shape.name, '', params)
        members = shapes[input_shape.name].get('members', {})
        required = [serialized_name(m, members[m]) for m in
                    shapes[input_shape.name].get('required', [])]
        out['operations'][op] = {'params': dict(sorted(params.items())), 'required': required}
    json.dump(out, sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
