// The ARM emulator (tests/emulators/azure) checked against Microsoft's own client: every call
// cloudbrain's azure driver makes, made here by @azure/arm-compute and @azure/arm-network
// (installed by tests/support/azure_sdk.sh) with the emulator as their endpoint and a stub
// credential that hands out a token the emulator was told about. The SDK follows the
// long-running operations, pages and throttling answers itself, so what it accepts is what
// Azure's own client makes of the emulator's wire format.
//
// node --test arm_sdk.test.mjs, with AZURE_SDK_MODULES (the node_modules folder), ARM_TLS_CERT
// and ARM_TLS_KEY (a certificate for 127.0.0.1 that NODE_EXTRA_CA_CERTS trusts: the SDK sends
// bearer tokens over TLS only). run_arm_sdk_test.sh sets them up.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const emulatorPath = path.join(here, "..", "..", "emulators", "azure", "arm_emulator.py");
const require = createRequire(path.join(process.env.AZURE_SDK_MODULES, "resolve.js"));
const { ComputeManagementClient } = require("@azure/arm-compute");
const { NetworkManagementClient } = require("@azure/arm-network");

const SUB = "6b7e1c3a-0f43-4b9e-9d61-3c8d2a0f5e11";
const RG = "sdk-check";
const SUBNET =
  `/subscriptions/${SUB}/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/` +
  "v/subnets/default";
const KEY =
  "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGCx0d0Ej1kyjFbnP6VyJ5xwMn0R4ZUO6i3u0VJEb2+Q tester@ci";
const FAST = { vm_create_delay: 0.05, vm_delete_delay: 0.05, vm_update_delay: 0.02,
               reservation_create_delay: 0.05, reservation_delete_delay: 0.05, page_size: 2 };

let emulator;
let base;
let compute;
let network;
const scopesAsked = new Set();

async function control(method, what, body) {
  const res = await fetch(`${base}/_emulator/${what}`, {
    method,
    headers: body ? { "Content-Type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  assert.equal(res.status, 200, `control ${method} ${what}: ${JSON.stringify(json)}`);
  return json;
}

function vmParameters(name, zone, extra = {}) {
  // What build_vm_body sends (providers/azure/wire.cpp), in the SDK's flattened model.
  return {
    location: "eastus",
    zones: [zone],
    tags: { "cloudbrain-deployment": "sdk", "cloudbrain-instance": name },
    hardwareProfile: { vmSize: "Standard_D2s_v5" },
    storageProfile: {
      imageReference: { publisher: "Canonical", offer: "ubuntu-24_04-lts", sku: "server",
                        version: "latest" },
      osDisk: { name: `${name}-osdisk`, createOption: "FromImage", deleteOption: "Delete",
                caching: "ReadWrite", managedDisk: { storageAccountType: "StandardSSD_LRS" } },
    },
    osProfile: {
      computerName: name,
      adminUsername: "azureuser",
      linuxConfiguration: {
        disablePasswordAuthentication: true,
        provisionVMAgent: true,
        ssh: { publicKeys: [{ path: "/home/azureuser/.ssh/authorized_keys", keyData: KEY }] },
      },
    },
    networkProfile: {
      networkApiVersion: "2020-11-01",
      networkInterfaceConfigurations: [{
        name: `${name}-nic`,
        primary: true,
        deleteOption: "Delete",
        ipConfigurations: [{
          name: "ipconfig1",
          primary: true,
          privateIPAddressVersion: "IPv4",
          subnet: { id: SUBNET },
          publicIPAddressConfiguration: {
            name: `${name}-ip`,
            sku: { name: "Standard", tier: "Regional" },
            deleteOption: "Delete",
            publicIPAllocationMethod: "Static",
            publicIPAddressVersion: "IPv4",
          },
        }],
      }],
    },
    ...extra,
  };
}

before(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "arm-sdk-"));
  const portFile = path.join(dir, "port");
  emulator = spawn("python3", [emulatorPath, "--port", "0", "--port-file", portFile,
                               "--tls-cert", process.env.ARM_TLS_CERT,
                               "--tls-key", process.env.ARM_TLS_KEY,
                               "--config", JSON.stringify(FAST),
                               "--parent-pid", String(process.pid)],
                   { stdio: ["ignore", "inherit", "inherit"] });
  for (let i = 0; i < 300 && !fs.existsSync(portFile); ++i) {
    await new Promise((r) => setTimeout(r, 50));
  }
  base = `https://127.0.0.1:${fs.readFileSync(portFile, "utf8").trim()}`;
  const { token } = await control("POST", "tokens", { token: "sdk-static-token",
                                                      expires_in: 3600 });
  // A stub TokenCredential: the SDK's bearer policy asks it for a token for its scopes.
  const credential = {
    getToken: async (scopes) => {
      for (const s of [].concat(scopes)) scopesAsked.add(s);
      return { token, expiresOnTimestamp: Date.now() + 3_600_000 };
    },
  };
  const options = { endpoint: base, credentials: { scopes: [`${base}/.default`] },
                    retryOptions: { maxRetries: 3, retryDelayInMs: 100 } };
  compute = new ComputeManagementClient(credential, SUB, options);
  network = new NetworkManagementClient(credential, SUB, options);
});

after(() => {
  if (emulator) emulator.kill("SIGTERM");
});

describe("virtual machines", () => {
  test("create, read with the instance view, the NIC's address, list by pages, delete",
       async () => {
    const vm = await compute.virtualMachines.beginCreateOrUpdateAndWait(
      RG, "cb-sdk-1", vmParameters("cb-sdk-1", "1"), { updateIntervalInMs: 20 });
    assert.equal(vm.provisioningState, "Succeeded");
    assert.match(vm.vmId, /^[0-9a-f-]{36}$/);
    assert.deepEqual(vm.zones, ["1"]);
    assert.equal(vm.tags["cloudbrain-instance"], "cb-sdk-1");
    assert.ok(scopesAsked.has(`${base}/.default`));

    const read = await compute.virtualMachines.get(RG, "cb-sdk-1", { expand: "instanceView" });
    const codes = read.instanceView.statuses.map((s) => s.code);
    assert.deepEqual(codes, ["ProvisioningState/succeeded", "PowerState/running"]);
    const nicId = read.networkProfile.networkInterfaces[0].id;
    assert.match(nicId, /\/providers\/Microsoft\.Network\/networkInterfaces\/cb-sdk-1-nic$/);
    assert.equal(read.networkProfile.networkInterfaces[0].deleteOption, "Delete");
    assert.equal(read.storageProfile.osDisk.deleteOption, "Delete");
    assert.equal(read.osProfile.linuxConfiguration.disablePasswordAuthentication, true);

    const nic = await network.networkInterfaces.get(RG, "cb-sdk-1-nic",
                                                    { expand: "ipConfigurations/publicIPAddress" });
    assert.match(nic.ipConfigurations[0].publicIPAddress.ipAddress, /^203\.0\.113\.\d+$/);
    assert.match(nic.ipConfigurations[0].privateIPAddress, /^10\.0\.\d+\.\d+$/);
    const pip = await network.publicIPAddresses.get(RG, "cb-sdk-1-ip");
    assert.equal(pip.ipAddress, nic.ipConfigurations[0].publicIPAddress.ipAddress);

    for (const n of ["cb-sdk-2", "cb-sdk-3", "cb-sdk-4", "cb-sdk-5"]) {
      await compute.virtualMachines.beginCreateOrUpdateAndWait(RG, n, vmParameters(n, "2"),
                                                               { updateIntervalInMs: 20 });
    }
    const names = [];
    for await (const v of compute.virtualMachines.list(RG)) names.push(v.name);
    assert.deepEqual(names.sort(), ["cb-sdk-1", "cb-sdk-2", "cb-sdk-3", "cb-sdk-4", "cb-sdk-5"]);
    const log = await control("GET", "requests?path_prefix=/subscriptions/");
    const pages = log.requests.filter((r) => r.route === "virtualMachines.list");
    assert.equal(pages.length, 3, "five VMs at two a page are three pages");

    for (const n of names) {
      await compute.virtualMachines.beginDeleteAndWait(RG, n, { updateIntervalInMs: 20 });
    }
    await assert.rejects(compute.virtualMachines.get(RG, "cb-sdk-1"),
                         (e) => e.statusCode === 404 && e.code === "ResourceNotFound");
    const state = await control("GET", "state");
    assert.deepEqual([state.instances, state.nics, state.public_ips, state.disks],
                     [[], [], [], []], "deleteOption Delete leaves nothing behind");
  });

  test("a PUT of the same VM again is the same VM", async () => {
    const p = vmParameters("cb-sdk-again", "3");
    const first = await compute.virtualMachines.beginCreateOrUpdateAndWait(
      RG, "cb-sdk-again", p, { updateIntervalInMs: 20 });
    const second = await compute.virtualMachines.beginCreateOrUpdateAndWait(
      RG, "cb-sdk-again", p, { updateIntervalInMs: 20 });
    assert.equal(second.vmId, first.vmId);
    const counters = await control("GET", "counters");
    assert.equal(counters.vms_created["cb-sdk-again"], 1);
    const moved = vmParameters("cb-sdk-again", "1");
    await assert.rejects(
      compute.virtualMachines.beginCreateOrUpdateAndWait(RG, "cb-sdk-again", moved),
      (e) => e.statusCode === 409 && e.code === "PropertyChangeNotAllowed");
    await compute.virtualMachines.beginDeleteAndWait(RG, "cb-sdk-again",
                                                     { updateIntervalInMs: 20 });
  });

  test("a zone without room fails the operation and leaves the VM Failed", async () => {
    await control("POST", "capacity", { zone: "2", remaining: 0 });
    try {
      await assert.rejects(
        compute.virtualMachines.beginCreateOrUpdateAndWait(
          RG, "cb-sdk-full", vmParameters("cb-sdk-full", "2"), { updateIntervalInMs: 20 }),
        (e) => /ZonalAllocationFailed/.test(e.message) && /sufficient capacity/.test(e.message));
      const failed = await compute.virtualMachines.get(RG, "cb-sdk-full",
                                                       { expand: "instanceView" });
      assert.equal(failed.provisioningState, "Failed");
      const status = failed.instanceView.statuses[0];
      assert.equal(status.code, "ProvisioningState/failed/ZonalAllocationFailed");
      assert.equal(status.level, "Error");
      await compute.virtualMachines.beginDeleteAndWait(RG, "cb-sdk-full",
                                                       { updateIntervalInMs: 20 });
    } finally {
      await control("POST", "capacity", { zone: "2", remaining: null });
    }
  });

  test("a size the zone does not offer, and a quota, are refused at once", async () => {
    await control("POST", "skus", { zone: "3", size: "Standard_D2s_v5" });
    await assert.rejects(
      compute.virtualMachines.beginCreateOrUpdateAndWait(RG, "cb-sdk-sku",
                                                         vmParameters("cb-sdk-sku", "3")),
      (e) => e.statusCode === 409 && e.code === "SkuNotAvailable");
    await control("POST", "skus", { zone: "3", size: "Standard_D2s_v5", available: true });
    await control("POST", "quota", { cores: 0 });
    await assert.rejects(
      compute.virtualMachines.beginCreateOrUpdateAndWait(RG, "cb-sdk-quota",
                                                         vmParameters("cb-sdk-quota", "1")),
      (e) => e.statusCode === 409 && e.code === "OperationNotAllowed" && /quota/.test(e.message));
    await control("POST", "quota", { cores: null });
  });

  test("429 with Retry-After is waited out, Location-only operations are followed", async () => {
    await control("POST", "throttle", { count: 2, retry_after: 1 });
    const before = (await control("GET", "counters")).throttled;
    await compute.virtualMachines.beginCreateOrUpdateAndWait(
      RG, "cb-sdk-slow", vmParameters("cb-sdk-slow", "1"), { updateIntervalInMs: 20 });
    assert.equal((await control("GET", "counters")).throttled - before, 2);
    await control("POST", "config", { lro_headers: "location" });
    try {
      await compute.virtualMachines.beginDeleteAndWait(RG, "cb-sdk-slow",
                                                       { updateIntervalInMs: 20 });
    } finally {
      await control("POST", "config", { lro_headers: "both" });
    }
    await assert.rejects(compute.virtualMachines.get(RG, "cb-sdk-slow"),
                         (e) => e.statusCode === 404);
  });
});

describe("capacity reservations", () => {
  test("group, reservation, a VM in it, leaving it, deleting it", async () => {
    const group = await compute.capacityReservationGroups.createOrUpdate(
      RG, "cloudbrain-sdk", { location: "eastus", zones: ["1", "2", "3"],
                              tags: { "cloudbrain-deployment": "sdk" } });
    assert.deepEqual(group.zones, ["1", "2", "3"]);
    const r = await compute.capacityReservations.beginCreateOrUpdateAndWait(
      RG, "cloudbrain-sdk", "cbr-sdk-1",
      { location: "eastus", sku: { name: "Standard_D2s_v5", capacity: 2 }, zones: ["1"],
        tags: { "cloudbrain-deployment": "sdk", "cloudbrain-reservation": "r1" } },
      { updateIntervalInMs: 20 });
    assert.equal(r.provisioningState, "Succeeded");
    assert.equal(r.sku.capacity, 2);

    const vm = await compute.virtualMachines.beginCreateOrUpdateAndWait(
      RG, "cb-sdk-reserved",
      vmParameters("cb-sdk-reserved", "1",
                   { capacityReservation: { capacityReservationGroup: { id: group.id } } }),
      { updateIntervalInMs: 20 });
    assert.equal(vm.capacityReservation.capacityReservationGroup.id, group.id);
    const held = await compute.capacityReservations.get(RG, "cloudbrain-sdk", "cbr-sdk-1",
                                                       { expand: "instanceView" });
    assert.deepEqual(held.virtualMachinesAssociated.map((v) => v.id), [vm.id]);
    assert.deepEqual(held.instanceView.utilizationInfo.virtualMachinesAllocated.map((v) => v.id),
                     [vm.id]);
    const listed = [];
    for await (const x of compute.capacityReservations.listByCapacityReservationGroup(
      RG, "cloudbrain-sdk")) listed.push(x);
    assert.deepEqual(listed.map((x) => [x.name, x.tags["cloudbrain-reservation"]]),
                     [["cbr-sdk-1", "r1"]]);

    // Azure deletes no reservation a VM is in: quantity to zero, the VM leaves, then delete.
    await assert.rejects(
      compute.capacityReservations.beginDeleteAndWait(RG, "cloudbrain-sdk", "cbr-sdk-1"),
      (e) => e.statusCode === 409);
    await compute.capacityReservations.beginUpdateAndWait(
      RG, "cloudbrain-sdk", "cbr-sdk-1", { sku: { capacity: 0 } }, { updateIntervalInMs: 20 });
    const left = await compute.virtualMachines.beginUpdateAndWait(
      RG, "cb-sdk-reserved", { capacityReservation: { capacityReservationGroup: { id: null } } },
      { updateIntervalInMs: 20 });
    assert.equal(left.capacityReservation, undefined);
    await compute.capacityReservations.beginDeleteAndWait(RG, "cloudbrain-sdk", "cbr-sdk-1",
                                                          { updateIntervalInMs: 20 });
    await assert.rejects(compute.capacityReservations.get(RG, "cloudbrain-sdk", "cbr-sdk-1"),
                         (e) => e.statusCode === 404);
    const stillRunning = await compute.virtualMachines.get(RG, "cb-sdk-reserved",
                                                           { expand: "instanceView" });
    assert.ok(stillRunning.instanceView.statuses.some((s) => s.code === "PowerState/running"));
    await compute.virtualMachines.beginDeleteAndWait(RG, "cb-sdk-reserved",
                                                     { updateIntervalInMs: 20 });
    await compute.capacityReservationGroups.delete(RG, "cloudbrain-sdk");
  });

  test("a reservation in a zone without room fails", async () => {
    await compute.capacityReservationGroups.createOrUpdate(
      RG, "cloudbrain-sdk-2", { location: "eastus", zones: ["1", "2"] });
    await control("POST", "capacity", { zone: "2", remaining: 1 });
    try {
      await assert.rejects(
        compute.capacityReservations.beginCreateOrUpdateAndWait(
          RG, "cloudbrain-sdk-2", "cbr-sdk-2",
          { location: "eastus", sku: { name: "Standard_D2s_v5", capacity: 3 }, zones: ["2"] },
          { updateIntervalInMs: 20 }),
        (e) => /ZonalAllocationFailed/.test(e.message));
    } finally {
      await control("POST", "capacity", { zone: "2", remaining: null });
    }
    await compute.capacityReservations.beginDeleteAndWait(RG, "cloudbrain-sdk-2", "cbr-sdk-2",
                                                          { updateIntervalInMs: 20 });
  });
});
