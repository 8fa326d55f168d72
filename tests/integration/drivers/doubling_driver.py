#!/usr/bin/python3
"""A deliberately broken driver for the conformance kit's own test: cloudbrain-exec-driver with
its create made forgetful. It neither looks in its journal nor names the machine after the
request, so every create makes another machine, retries under the same idempotency key
included: the kind of driver that would double VMs, which the kit must fail."""

import importlib.machinery
import importlib.util
import os
import sys
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
EXEC_DRIVER = os.path.join(HERE, "..", "..", "..", "deploy", "drivers", "cloudbrain-exec-driver")

loader = importlib.machinery.SourceFileLoader("cloudbrain_exec_driver", EXEC_DRIVER)
spec = importlib.util.spec_from_loader(loader.name, loader)
exec_driver = importlib.util.module_from_spec(spec)
loader.exec_module(exec_driver)


class DoublingCloud(exec_driver.ExecCloud):
    async def create(self, ctx, spec):
        record = {"name": spec["name"], "key": ctx["idempotency_key"], "zone": spec["zone"],
                  "image": spec["image"], "instance_type": spec["instance_type"],
                  "labels": spec.get("labels") or {}, "created_at": exec_driver.now_rfc3339(),
                  "made": True}
        answer = await self.run_hook("create", ctx, {
            "name": f"{spec['name']}-{uuid.uuid4().hex[:8]}", "zone": spec["zone"],
            "image": spec["image"], "instance_type": spec["instance_type"],
            "labels": record["labels"]})
        self.apply(record, answer)
        self.journal.put(ctx["provider"], spec["name"], record)
        await self.journal.save()
        return self.machine_of(record)


exec_driver.ExecCloud = DoublingCloud

if __name__ == "__main__":
    sys.exit(exec_driver.main())
