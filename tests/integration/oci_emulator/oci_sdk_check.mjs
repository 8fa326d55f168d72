// The OCI emulator (tests/emulators/oci) checked against Oracle's own TypeScript SDK, oci-core and
// oci-common (and oci-workrequests, which oci-core brings), with a SimpleAuthenticationDetails-
// Provider and the emulator as a custom endpoint: every operation cloudbrain's driver uses, the
// SDK signing each request and parsing each answer. Run by run.sh with `node --test`.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(path.join(process.env.OCI_SDK_PREFIX, "node_modules", "x.js"));
const common = require("oci-common");
const core = require("oci-core");
const workrequests = require("oci-workrequests");

const here = path.dirname(fileURLToPath(import.meta.url));
const emulatorPath = path.join(here, "..", "..", "emulators", "oci", "oci_emulator.py");

const TENANCY = "ocid1.tenancy.oc1..aaaaaaaasdkchecktenancy";
const USER = "ocid1.user.oc1..aaaaaaaasdkcheckuser";
const COMPARTMENT = "ocid1.compartment.oc1..aaaaaaaasdkcheckcompartment";
const SUBNET = "ocid1.subnet.oc1.iad.aaaaaaaasdkchecksubnet";
const IMAGE = "ocid1.image.oc1.iad.aaaaaaaasdkcheckimage";
const AD1 = "Uocm:US-ASHBURN-AD-1";
const AD2 = "Uocm:US-ASHBURN-AD-2";
const FAST = {
  provisioning_delay: 0.2, terminate_delay: 0.2, failure_delay: 0.2,
  reservation_create_delay: 0.2, reservation_delete_delay: 0.2, work_request_start_delay: 0.02,
};

let emulator;
let base;
let workdir;
let compute;
let network;
let wrClient;
let fingerprint;
let privateKey;

function startEmulator() {
  workdir = fs.mkdtempSync(path.join(os.tmpdir(), "oci-sdk-check-"));
  const portFile = path.join(workdir, "port");
  const log = fs.openSync(path.join(workdir, "emulator.log"), "a");
  emulator = spawn("python3", [emulatorPath, "--port", "0", "--port-file", portFile,
    "--parent-pid", String(process.pid), "--config", JSON.stringify(FAST)],
  { stdio: ["ignore", log, log] });
  const deadline = Date.now() + 30000;
  return new Promise((resolve, reject) => {
    const poll = () => {
      if (fs.existsSync(portFile)) {
        const port = parseInt(fs.readFileSync(portFile, "utf8"), 10);
        if (port > 0) return resolve(port);
      }
      if (emulator.exitCode !== null || Date.now() > deadline) {
        return reject(new Error("the emulator did not start; see " + workdir + "/emulator.log"));
      }
      setTimeout(poll, 50);
    };
    poll();
  });
}

async function control(method, what, body) {
  const res = await fetch(`${base}/_emulator/${what}`, {
    method, headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const out = await res.json();
  assert.equal(res.status, 200, `control ${method} ${what}: ${JSON.stringify(out)}`);
  return out;
}

// No retries in the SDK: every answer the emulator gives is seen once, as it is.
const once = {
  retryConfiguration: {
    terminationStrategy: new common.MaxAttemptsTerminationStrategy(1),
  },
};

function clientsFor(keyPem, fp) {
  const provider = new common.SimpleAuthenticationDetailsProvider(
    TENANCY, USER, fp, keyPem, null, common.Region.US_ASHBURN_1);
  const c = new core.ComputeClient({ authenticationDetailsProvider: provider }, once);
  c.endpoint = base;
  const n = new core.VirtualNetworkClient({ authenticationDetailsProvider: provider }, once);
  n.endpoint = base;
  const w = new workrequests.WorkRequestClient({ authenticationDetailsProvider: provider }, once);
  w.endpoint = base;
  return { c, n, w };
}

async function eventually(what, fn, seconds = 10) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

async function rejects(promise, status, code) {
  try {
    await promise;
  } catch (e) {
    assert.ok(e instanceof common.OciError, `not an OciError: ${e}`);
    assert.equal(e.statusCode, status, e.message);
    assert.equal(e.serviceCode, code, e.message);
    assert.match(e.opcRequestId ?? "", /[0-9A-F]{32}\/[0-9A-F]{32}$/,
      "opc-request-id on errors too");
    return e;
  }
  assert.fail(`expected HTTP ${status} ${code}`);
}

function launchDetails(name, extra = {}) {
  return {
    compartmentId: COMPARTMENT,
    availabilityDomain: AD1,
    displayName: name,
    shape: "VM.Standard.E4.Flex",
    shapeConfig: { ocpus: 1, memoryInGBs: 8 },
    sourceDetails: { sourceType: "image", imageId: IMAGE },
    createVnicDetails: { subnetId: SUBNET, assignPublicIp: true },
    metadata: { ssh_authorized_keys: "ssh-ed25519 AAAAC3Nza sdk@check" },
    freeformTags: { "cloudbrain-deployment": "sdk", "cloudbrain-instance": name },
    ...extra,
  };
}

before(async () => {
  const port = await startEmulator();
  base = `http://127.0.0.1:${port}`;
  const pair = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
  privateKey = pair.privateKey.export({ type: "pkcs8", format: "pem" });
  const registered = await control("POST", "keys", {
    tenancy: TENANCY, user: USER,
    public_key_pem: pair.publicKey.export({ type: "spki", format: "pem" }),
  });
  fingerprint = registered.fingerprint;
  // The fingerprint is OCI's: MD5 of the DER public key.
  const der = pair.publicKey.export({ type: "spki", format: "der" });
  const md5 = crypto.createHash("md5").update(der).digest("hex");
  assert.equal(fingerprint, md5.match(/../g).join(":"));
  ({ c: compute, n: network, w: wrClient } = clientsFor(privateKey, fingerprint));
});

after(() => {
  if (emulator && emulator.exitCode === null) emulator.kill("SIGTERM");
  const log = fs.readFileSync(path.join(workdir, "emulator.log"), "utf8");
  fs.rmSync(workdir, { recursive: true, force: true });
  assert.doesNotMatch(log, /Traceback/, "the emulator failed:\n" + log);
});

describe("instances", () => {
  it("LaunchInstance, GetInstance, the VNIC's address, TerminateInstance", async () => {
    const token = crypto.randomUUID();
    const launched = await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-one"), opcRetryToken: token,
    });
    const inst = launched.instance;
    assert.match(inst.id, /^ocid1\.instance\.oc1\.iad\./);
    assert.equal(inst.lifecycleState, core.models.Instance.LifecycleState.Provisioning);
    assert.equal(inst.availabilityDomain, AD1);
    assert.equal(inst.shapeConfig.ocpus, 1);
    assert.equal(inst.shapeConfig.memoryInGBs, 8);
    assert.equal(inst.freeformTags["cloudbrain-instance"], "sdk-one");
    assert.match(String(inst.timeCreated), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(!isNaN(Date.parse(inst.timeCreated)));
    assert.match(launched.opcWorkRequestId, /^ocid1\.coreservicesworkrequest\./);
    assert.ok(launched.etag);

    // The same token and request: the same instance, nothing new.
    const again = await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-one"), opcRetryToken: token,
    });
    assert.equal(again.instance.id, inst.id);
    assert.equal(again.opcWorkRequestId, launched.opcWorkRequestId);
    // The same token on another request is a conflict.
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-other"), opcRetryToken: token,
    }), 409, "InvalidatedRetryToken");
    const counters = await control("GET", "counters");
    assert.equal(counters.instances_created["sdk-one"], 1);
    assert.equal(counters.insert_calls["sdk-one"], 2);
    assert.ok(counters.dedup_hits >= 1);

    const wr = await eventually("the launch work request", async () => {
      const got = await wrClient.getWorkRequest({ workRequestId: launched.opcWorkRequestId });
      return got.workRequest.status === "SUCCEEDED" && got.workRequest;
    });
    assert.equal(wr.operationType, "LaunchInstance");
    assert.equal(wr.resources[0].identifier, inst.id);
    assert.equal(wr.percentComplete, 100);

    const running = await compute.getInstance({ instanceId: inst.id });
    assert.equal(running.instance.lifecycleState, "RUNNING");
    assert.ok(running.etag);
    const atts = await compute.listVnicAttachments({
      compartmentId: COMPARTMENT, instanceId: inst.id, availabilityDomain: AD1,
    });
    assert.equal(atts.items.length, 1);
    assert.equal(atts.items[0].lifecycleState, "ATTACHED");
    assert.equal(atts.items[0].nicIndex, 0);
    const vnic = await network.getVnic({ vnicId: atts.items[0].vnicId });
    assert.equal(vnic.vnic.isPrimary, true);
    assert.match(vnic.vnic.publicIp, /^203\.0\.113\./);
    assert.match(vnic.vnic.privateIp, /^10\.0\./);

    const gone = await compute.terminateInstance({
      instanceId: inst.id, preserveBootVolume: false,
    });
    assert.match(gone.opcWorkRequestId, /^ocid1\.coreservicesworkrequest\./);
    assert.ok(gone.opcRequestId);
    assert.equal((await compute.getInstance({ instanceId: inst.id })).instance.lifecycleState,
      "TERMINATING");
    await eventually("TERMINATED", async () =>
      (await compute.getInstance({ instanceId: inst.id })).instance.lifecycleState ===
        "TERMINATED");
    const view = (await control("GET", "instances")).instances.find((i) => i.id === inst.id);
    assert.equal(view.preserveBootVolume, false);
    // Terminating again changes nothing and is no error.
    await compute.terminateInstance({ instanceId: inst.id });
    await rejects(compute.getInstance({ instanceId: "ocid1.instance.oc1.iad.aaaaaaaanosuchone" }),
      404, "NotAuthorizedOrNotFound");
  });

  it("ListInstances pages with opc-next-page and filters", async () => {
    for (let k = 0; k < 5; ++k) {
      await compute.launchInstance({
        launchInstanceDetails: launchDetails(`sdk-page-${k}`, { availabilityDomain: AD2 }),
      });
    }
    const seen = [];
    let page;
    let pages = 0;
    do {
      const res = await compute.listInstances({
        compartmentId: COMPARTMENT, availabilityDomain: AD2, limit: 2, page,
      });
      assert.ok(res.items.length <= 2);
      seen.push(...res.items.map((i) => i.displayName));
      page = res.opcNextPage;
      ++pages;
    } while (page);
    assert.equal(pages, 3);
    assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4].map((k) => `sdk-page-${k}`));
    // Newest first by default.
    assert.equal(seen[0], "sdk-page-4");
    const named = await compute.listInstances({
      compartmentId: COMPARTMENT, displayName: "sdk-page-3",
    });
    assert.equal(named.items.length, 1);
    assert.equal(named.items[0].displayName, "sdk-page-3");
    const all = [];
    const records = compute.listInstancesRecordIterator({ compartmentId: COMPARTMENT, limit: 1 });
    for await (const i of records) {
      all.push(i.id);
    }
    assert.equal(new Set(all).size, all.length);
    assert.ok(all.length >= 6);
    await rejects(compute.listInstances({ compartmentId: COMPARTMENT, limit: 5000 }), 400,
      "InvalidParameter");
  });

  it("refusals: capacity, limits, bad shapes, images and bodies", async () => {
    await control("POST", "capacity", { zone: AD1, remaining: 0 });
    const e = await rejects(
      compute.launchInstance({ launchInstanceDetails: launchDetails("sdk-full") }),
      500, "InternalError");
    assert.equal(e.message, "Out of host capacity.");
    await control("POST", "capacity", { zone: AD1, remaining: null });

    // Out of capacity found out later: the work request fails and says why.
    await control("POST", "capacity", { zone: AD2, remaining: 0, mode: "work_request" });
    const late = await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-late", { availabilityDomain: AD2 }),
    });
    await eventually("the failed work request", async () =>
      (await wrClient.getWorkRequest({ workRequestId: late.opcWorkRequestId }))
        .workRequest.status === "FAILED");
    const errs = await wrClient.listWorkRequestErrors({ workRequestId: late.opcWorkRequestId });
    assert.equal(errs.items.length, 1);
    assert.equal(errs.items[0].code, "InternalError");
    assert.equal(errs.items[0].message, "Out of host capacity.");
    const lateInstance = await compute.getInstance({ instanceId: late.instance.id });
    assert.equal(lateInstance.instance.lifecycleState, "TERMINATED");
    await control("POST", "capacity", { zone: AD2, remaining: null });

    await control("POST", "limits", { metric: "instance-count", limit: 0 });
    await rejects(compute.launchInstance({ launchInstanceDetails: launchDetails("sdk-limit") }),
      400, "LimitExceeded");
    await control("POST", "limits", { metric: "instance-count", limit: null });

    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-flex", { shapeConfig: undefined }),
    }), 400, "InvalidParameter");
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-fixed", { shape: "VM.Standard2.1" }),
    }), 400, "InvalidParameter");
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-mem", {
        shapeConfig: { ocpus: 1, memoryInGBs: 100 },
      }),
    }), 400, "InvalidParameter");
    await control("POST", "catalogue", { images: [IMAGE] });
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-image", {
        sourceDetails: { sourceType: "image", imageId: "ocid1.image.oc1.iad.aaaaaaaanosuchimage" },
      }),
    }), 400, "RelatedResourceNotAuthorizedOrNotFound");
    await control("POST", "catalogue", { images: [] });
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-ad", { availabilityDomain: "Uocm:PHX-AD-9" }),
    }), 400, "InvalidParameter");
  });
});

describe("compute capacity reservations", () => {
  it("create, follow to ACTIVE, launch into it, list, delete", async () => {
    const token = crypto.randomUUID();
    const details = {
      compartmentId: COMPARTMENT, availabilityDomain: AD2, displayName: "cbr-sdk",
      isDefaultReservation: false,
      freeformTags: { "cloudbrain-deployment": "sdk", "cloudbrain-reservation": "r1" },
      instanceReservationConfigs: [{
        instanceShape: "VM.Standard.E4.Flex", instanceShapeConfig: { ocpus: 1, memoryInGBs: 8 },
        reservedCount: 2,
      }],
    };
    const made = await compute.createComputeCapacityReservation({
      createComputeCapacityReservationDetails: details, opcRetryToken: token,
    });
    const r = made.computeCapacityReservation;
    assert.match(r.id, /^ocid1\.capacityreservation\.oc1\.iad\./);
    assert.equal(r.lifecycleState, "CREATING");
    assert.equal(r.reservedInstanceCount, 2);
    assert.ok(made.opcWorkRequestId);
    const replay = await compute.createComputeCapacityReservation({
      createComputeCapacityReservationDetails: details, opcRetryToken: token,
    });
    assert.equal(replay.computeCapacityReservation.id, r.id);
    assert.equal((await control("GET", "counters")).reservations_created["cbr-sdk"], 1);

    const active = await eventually("ACTIVE", async () => {
      const got = await compute.getComputeCapacityReservation({ capacityReservationId: r.id });
      const res = got.computeCapacityReservation;
      return res.lifecycleState === "ACTIVE" && res;
    });
    assert.equal(active.instanceReservationConfigs[0].instanceShape, "VM.Standard.E4.Flex");
    assert.equal(active.instanceReservationConfigs[0].usedCount, 0);
    const madeWr = await wrClient.getWorkRequest({ workRequestId: made.opcWorkRequestId });
    assert.equal(madeWr.workRequest.status, "SUCCEEDED");

    const into = await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-in-res", {
        availabilityDomain: AD2, capacityReservationId: r.id,
      }),
    });
    assert.equal(into.instance.capacityReservationId, r.id);
    const used = await compute.getComputeCapacityReservation({ capacityReservationId: r.id });
    assert.equal(used.computeCapacityReservation.usedInstanceCount, 1);
    // Another shape configuration does not fit it.
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-misfit", {
        availabilityDomain: AD2, capacityReservationId: r.id,
        shapeConfig: { ocpus: 2, memoryInGBs: 16 },
      }),
    }), 400, "InvalidParameter");
    await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-in-res-2", {
        availabilityDomain: AD2, capacityReservationId: r.id,
      }),
    });
    await rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-in-res-3", {
        availabilityDomain: AD2, capacityReservationId: r.id,
      }),
    }), 500, "InternalError");

    const listed = await compute.listComputeCapacityReservations({
      compartmentId: COMPARTMENT, availabilityDomain: AD2, displayName: "cbr-sdk",
    });
    assert.equal(listed.items.length, 1);
    assert.equal(listed.items[0].usedInstanceCount, 2);
    assert.equal(listed.items[0].freeformTags["cloudbrain-reservation"], "r1");

    await compute.terminateInstance({ instanceId: into.instance.id, preserveBootVolume: false });
    await eventually("one place given back", async () =>
      (await compute.getComputeCapacityReservation({ capacityReservationId: r.id }))
        .computeCapacityReservation.usedInstanceCount === 1);

    const del = await compute.deleteComputeCapacityReservation({ capacityReservationId: r.id });
    assert.ok(del.opcWorkRequestId);
    await eventually("DELETED", async () =>
      (await compute.getComputeCapacityReservation({ capacityReservationId: r.id }))
        .computeCapacityReservation.lifecycleState === "DELETED");
    const deleted = await compute.listComputeCapacityReservations({
      compartmentId: COMPARTMENT, lifecycleState: "DELETED",
    });
    assert.ok(deleted.items.some((x) => x.id === r.id));
  });

  it("an availability domain without room, then pages of reservations", async () => {
    await control("POST", "capacity", { zone: AD1, remaining: 1 });
    const details = (name, count) => ({
      compartmentId: COMPARTMENT, availabilityDomain: AD1, displayName: name,
      instanceReservationConfigs: [{ instanceShape: "VM.Standard2.1", reservedCount: count }],
    });
    const e = await rejects(compute.createComputeCapacityReservation({
      createComputeCapacityReservationDetails: details("cbr-big", 2),
    }), 500, "InternalError");
    assert.equal(e.message, "Out of host capacity.");
    await control("POST", "capacity", { zone: AD1, remaining: null });
    for (let k = 0; k < 3; ++k) {
      await compute.createComputeCapacityReservation({
        createComputeCapacityReservationDetails: details(`cbr-page-${k}`, 1),
      });
    }
    const names = [];
    let page;
    do {
      const res = await compute.listComputeCapacityReservations({
        compartmentId: COMPARTMENT, availabilityDomain: AD1, limit: 2, page,
      });
      names.push(...res.items.map((x) => x.displayName));
      page = res.opcNextPage;
    } while (page);
    assert.deepEqual(names.sort(), ["cbr-page-0", "cbr-page-1", "cbr-page-2"]);
  });
});

describe("signatures and faults", () => {
  it("an unregistered key and a skewed clock are NotAuthenticated", async () => {
    const other = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
    const otherPem = other.privateKey.export({ type: "pkcs8", format: "pem" });
    const { c } = clientsFor(otherPem, fingerprint);
    await rejects(c.listInstances({ compartmentId: COMPARTMENT }), 401, "NotAuthenticated");
    const log = (await control("GET", "requests?path_prefix=/20160918/")).requests;
    assert.match(log[log.length - 1].auth_error, /does not verify/);

    await control("POST", "config", { clock_offset: 900 });
    const e = await rejects(compute.listInstances({ compartmentId: COMPARTMENT }), 401,
      "NotAuthenticated");
    assert.ok(e);
    await control("POST", "config", { clock_offset: 0 });
    await compute.listInstances({ compartmentId: COMPARTMENT });
  });

  it("throttling, server errors and lost answers", async () => {
    await control("POST", "throttle", { count: 1, retry_after: 2 });
    await rejects(compute.listInstances({ compartmentId: COMPARTMENT }), 429, "TooManyRequests");
    await control("POST", "fail", { count: 1, status: 503 });
    await rejects(compute.listInstances({ compartmentId: COMPARTMENT }), 503, "ServiceUnavailable");
    await compute.listInstances({ compartmentId: COMPARTMENT });

    // The launch takes effect, its answer is lost; the retry with the same token finds it.
    await control("POST", "drop", { count: 1, when: "after", method: "POST" });
    const token = crypto.randomUUID();
    await assert.rejects(compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-lost"), opcRetryToken: token,
    }));
    const found = await compute.launchInstance({
      launchInstanceDetails: launchDetails("sdk-lost"), opcRetryToken: token,
    });
    assert.equal(found.instance.displayName, "sdk-lost");
    const counters = await control("GET", "counters");
    assert.equal(counters.instances_created["sdk-lost"], 1);
    assert.equal(counters.instances_launched_by_tag["sdk-lost"], 1);
  });
});
