#!/usr/bin/python3
"""The hook cloudbrain-exec-driver runs in the tests: a lab of machines kept in a JSON file
($LAB_STATE, locked while it is read and written), handing out addresses from 198.51.100.0/24.

- create is idempotent by name (a retry after a crash runs it again), refuses a zone without
  room (the configuration's "capacity", per zone) with a capacity error, and an unknown zone;
- it needs the secret "secret.lab-password" to be "open-sesame" (an auth error otherwise);
- every create that made a machine is counted in the file, so a test can tell a machine made
  twice from one made once.
A name in $LAB_SLOW_CREATES makes create of it sleep $LAB_SLOW_SECONDS first.
"""

import fcntl
import json
import os
import sys
import time


def answer(obj):
    json.dump(obj, sys.stdout)
    sys.stdout.write("\n")
    return 0


def error(kind, message):
    return answer({"error": {"kind": kind, "message": message}})


def main():
    request = json.load(sys.stdin)
    hook = os.environ["CLOUDBRAIN_HOOK"]
    if request["secret"].get("secret.lab-password") != "open-sesame":
        return error("auth", "the lab refused the password")
    machine = request["machine"]
    zones = request["config"].get("zones", [])
    capacity = int(request["config"].get("capacity", "100"))
    if hook == "create" and machine["name"] in os.environ.get("LAB_SLOW_CREATES", "").split():
        time.sleep(float(os.environ.get("LAB_SLOW_SECONDS", "1")))
    path = os.environ["LAB_STATE"]
    with open(path + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as f:
                state = json.load(f)
        except FileNotFoundError:
            state = {"machines": {}, "made": {}, "next": 1}
        result = None
        if hook == "create":
            name = machine["name"]
            if name not in state["machines"]:
                if machine["zone"] not in zones:
                    return error("invalid", f"the lab has no zone {machine['zone']}")
                in_zone = [m for m in state["machines"].values() if m["zone"] == machine["zone"]]
                if len(in_zone) >= capacity:
                    return error("capacity", f"zone {machine['zone']} is full")
                address = f"198.51.100.{state['next']}"
                state["next"] += 1
                state["machines"][name] = {"address": address, "zone": machine["zone"]}
                state["made"][name] = state["made"].get(name, 0) + 1
            m = state["machines"][name]
            result = {"upstream_id": "lab-" + m["address"], "ip_address": m["address"],
                      "zone": m["zone"], "status": "running"}
        elif hook == "status":
            m = state["machines"].get(machine["name"])
            if not m:
                return error("not_found", f"no machine {machine['name']}")
            result = {"upstream_id": "lab-" + m["address"], "ip_address": m["address"],
                      "status": "running"}
        elif hook == "delete":
            state["machines"].pop(machine["name"], None)
            result = {}
        else:
            return error("invalid", f"unknown hook {hook}")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(state, f)
        os.replace(tmp, path)
    return answer(result)


if __name__ == "__main__":
    sys.exit(main())
