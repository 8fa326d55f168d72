#!/usr/bin/python3
"""Regenerates gce_schema.json from the Compute v1 messages that ship with gcloud.

    /usr/bin/python3 gen_schema.py Instance Reservation > gce_schema.json

The emulator uses the result to reject unknown JSON field names and bad enum values in
request bodies the way Google's front end does. Needs gcloud's bundled libraries (it imports
them from /usr/lib/google-cloud-sdk); the emulator itself only reads the JSON.
"""
import json
import sys

sys.path.insert(0, '/usr/lib/google-cloud-sdk/lib')
sys.path.insert(0, '/usr/lib/google-cloud-sdk/lib/third_party')
from apitools.base.protorpclite import messages as pm  # noqa: E402
from googlecloudsdk.generated_clients.apis.compute.v1 import compute_v1_messages as m  # noqa: E402

out = {}


def visit(cls):
    key = cls.definition_name().split('.', 1)[-1] if hasattr(cls, 'definition_name') else cls.__name__
    if key in out:
        return key
    fields = {}
    out[key] = fields
    fl = list(cls.all_fields())
    if len(fl) == 1 and fl[0].name == 'additionalProperties':
        out[key] = '__map__'
        return key
    for f in fl:
        entry = {}
        if f.repeated:
            entry['r'] = 1
        if isinstance(f, pm.EnumField):
            entry['enum'] = sorted(f.type.names())
        elif isinstance(f, pm.MessageField):
            entry['msg'] = visit(f.type)
        elif isinstance(f, pm.IntegerField):
            wide = (pm.Variant.INT64, pm.Variant.UINT64, pm.Variant.SINT64)
            entry['t'] = 'int64' if f.variant in wide else 'int32'
        elif isinstance(f, pm.BooleanField):
            entry['t'] = 'bool'
        elif isinstance(f, pm.FloatField):
            entry['t'] = 'number'
        else:
            entry['t'] = 'string'
        fields[f.name] = entry
    return key


for name in sys.argv[1:] or ['Instance', 'Reservation']:
    visit(getattr(m, name))
print(json.dumps(out, indent=0, sort_keys=True, separators=(',', ':')))
