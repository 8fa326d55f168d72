#include "providers/azure/wire.hpp"

#include "tests/unit/azure/payload.hpp"

#include <gtest/gtest.h>
#include <boost/json.hpp>

namespace cloudbrain::providers::azure {
namespace {
namespace json = boost::json;
using test::payload;

constexpr const char* subnet_id =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net/providers/"
    "Microsoft.Network/virtualNetworks/v/subnets/default";

azure_settings settings(std::map<std::string, std::string> extra = {}) {
  provider_section s;
  s.name = "azure";
  s.type = "azure";
  s.zones = {"1", "2", "3"};
  s.endpoint = "http://127.0.0.1:8443";
  s.settings = {{"subscription", "00000000-0000-0000-0000-000000000000"},
                {"resource-group", "cloudbrain"},
                {"location", "eastus"},
                {"subnet", subnet_id},
                {"tenant", "11111111-1111-1111-1111-111111111111"},
                {"client-id", "22222222-2222-2222-2222-222222222222"},
                {"client-secret", "a&b=c d+e"}};
  for (auto& [k, v] : extra) s.settings[k] = v;
  return azure_settings::from_section(s).value();
}

instance_spec spec() {
  instance_spec s;
  s.instance_id = "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  s.name = "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e";
  s.image = "Canonical:ubuntu-24_04-lts:server:latest";
  s.instance_type = "standard";
  s.public_ssh_key =
      "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA me\n";
  s.zone = "2";
  s.tags = {{"team", "ci"}, {"a/b?c", "x<y"}};
  s.deployment = "prod";
  return s;
}

const json::value& at(const json::value& v, std::initializer_list<std::string_view> path) {
  const json::value* cur = &v;
  for (auto key : path) {
    if (cur->is_array()) {
      cur = &cur->as_array().at(std::stoul(std::string(key)));
    } else {
      cur = &cur->as_object().at(key);
    }
  }
  return *cur;
}

// ---- paths ----------------------------------------------------------------------------------

TEST(AzureWire, PathsAndUrls) {
  const auto s = settings();
  EXPECT_EQ(vm_path(s, "cb-x"),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/cloudbrain/"
            "providers/Microsoft.Compute/virtualMachines/cb-x");
  EXPECT_EQ(reservation_path(s, "cbr-x"),
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/cloudbrain/"
            "providers/Microsoft.Compute/capacityReservationGroups/cloudbrain-azure/"
            "capacityReservations/cbr-x");
  EXPECT_EQ(arm_url(s, "/x", compute_api_version, "$expand=instanceView"),
            "http://127.0.0.1:8443/x?api-version=2024-07-01&$expand=instanceView");
  EXPECT_TRUE(same_origin("http://127.0.0.1:8443/subscriptions/s/operations/1?p=2", s.endpoint));
  EXPECT_FALSE(same_origin("http://127.0.0.1:8444/x", s.endpoint));
  EXPECT_FALSE(same_origin("https://127.0.0.1:8443/x", s.endpoint));
  EXPECT_FALSE(same_origin("http://evil.example/x", s.endpoint));
  EXPECT_TRUE(same_origin("https://management.azure.com:443/x", "https://management.azure.com"));
  EXPECT_FALSE(same_origin("not a url", s.endpoint));
}

// ---- the VM body ----------------------------------------------------------------------------

TEST(AzureWire, ImagesAreUrnsOrResourceIds) {
  auto urn = image_reference_for("Canonical:ubuntu-24_04-lts:server:latest");
  ASSERT_TRUE(urn);
  EXPECT_EQ(urn->at("publisher"), "Canonical");
  EXPECT_EQ(urn->at("offer"), "ubuntu-24_04-lts");
  EXPECT_EQ(urn->at("sku"), "server");
  EXPECT_EQ(urn->at("version"), "latest");
  const std::string id =
      "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/img/providers/"
      "Microsoft.Compute/galleries/g/images/ci/versions/1.0.0";
  auto by_id = image_reference_for(id);
  ASSERT_TRUE(by_id);
  EXPECT_EQ(by_id->at("id").as_string(), id);
  EXPECT_EQ(by_id->size(), 1u);
  for (const char* bad : {"ubuntu", "a:b:c", "a:b:c:d:e", "a::c:d", "a:b c:d:e"}) {
    auto r = image_reference_for(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(errc::cloud_permanent));
    EXPECT_NE(r.error().detail.find("publisher:offer:sku:version"), std::string::npos);
  }
}

TEST(AzureWire, TheVmBodyHasEverythingTheVmNeedsAndLeavesNothingBilledBehind) {
  const auto s = settings();
  auto body = build_vm_body(spec(), s);
  ASSERT_TRUE(body) << body.error().detail;
  const json::value v = *body;
  EXPECT_EQ(at(v, {"location"}), "eastus");
  EXPECT_EQ(at(v, {"zones"}), json::array{"2"});
  EXPECT_EQ(at(v, {"properties", "hardwareProfile", "vmSize"}), "Standard_D2s_v5");
  EXPECT_EQ(at(v, {"properties", "storageProfile", "imageReference", "offer"}), "ubuntu-24_04-lts");
  const auto& disk = at(v, {"properties", "storageProfile", "osDisk"});
  EXPECT_EQ(at(disk, {"createOption"}), "FromImage");
  EXPECT_EQ(at(disk, {"deleteOption"}), "Delete");
  EXPECT_EQ(at(disk, {"name"}), "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e-osdisk");
  EXPECT_EQ(at(disk, {"managedDisk", "storageAccountType"}), "StandardSSD_LRS");

  const auto& os = at(v, {"properties", "osProfile"});
  EXPECT_EQ(at(os, {"computerName"}), "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(at(os, {"adminUsername"}), "azureuser");
  EXPECT_EQ(at(os, {"linuxConfiguration", "disablePasswordAuthentication"}), true);
  const auto& key = at(os, {"linuxConfiguration", "ssh", "publicKeys", "0"});
  EXPECT_EQ(at(key, {"path"}), "/home/azureuser/.ssh/authorized_keys");
  EXPECT_EQ(at(key, {"keyData"}),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA me");
  EXPECT_FALSE(os.as_object().contains("adminPassword"));

  const auto& net = at(v, {"properties", "networkProfile"});
  EXPECT_EQ(at(net, {"networkApiVersion"}), "2020-11-01");
  const auto& nic = at(net, {"networkInterfaceConfigurations", "0"});
  EXPECT_EQ(at(nic, {"name"}), "cb-0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e-nic");
  EXPECT_EQ(at(nic, {"properties", "deleteOption"}), "Delete");
  EXPECT_EQ(at(nic, {"properties", "primary"}), true);
  const auto& ip = at(nic, {"properties", "ipConfigurations", "0", "properties"});
  EXPECT_EQ(at(ip, {"subnet", "id"}), subnet_id);
  EXPECT_EQ(at(ip, {"publicIPAddressConfiguration", "properties", "deleteOption"}), "Delete");
  EXPECT_EQ(at(ip, {"publicIPAddressConfiguration", "sku", "name"}), "Standard");
  EXPECT_FALSE(v.as_object().at("properties").as_object().contains("capacityReservation"));

  const auto& tags = at(v, {"tags"}).as_object();
  EXPECT_EQ(tags.at("cloudbrain-deployment"), "prod");
  EXPECT_EQ(tags.at("cloudbrain-instance"), "0192f5c4-7a1e-7b3c-9d2e-4f5a6b7c8d9e");
  EXPECT_EQ(tags.at("team"), "ci");
  EXPECT_EQ(tags.at("a_b_c"), "x_y");  // ARM forbids < > % & \ ? / in tags
}

TEST(AzureWire, PremiumPrivateOnlyAndIntoAReservation) {
  const auto s = settings({{"public-ip", "false"}, {"os-disk-size-gb", "64"}});
  auto sp = spec();
  sp.instance_type = "premium";
  sp.reservation_upstream = "cbr-1";
  const std::string group = group_path(s);
  auto body = build_vm_body(sp, s, group);
  ASSERT_TRUE(body);
  const json::value v = *body;
  EXPECT_EQ(at(v, {"properties", "hardwareProfile", "vmSize"}), "Standard_D4s_v5");
  EXPECT_EQ(at(v, {"properties", "storageProfile", "osDisk", "diskSizeGB"}), 64);
  EXPECT_FALSE(at(v, {"properties", "networkProfile", "networkInterfaceConfigurations", "0",
                      "properties", "ipConfigurations", "0", "properties"})
                   .as_object()
                   .contains("publicIPAddressConfiguration"));
  EXPECT_EQ(
      at(v, {"properties", "capacityReservation", "capacityReservationGroup", "id"}).as_string(),
      group);
  sp.instance_type = "gigantic";
  EXPECT_TRUE(build_vm_body(sp, s).error().is(errc::cloud_permanent));
  sp.instance_type = "standard";
  sp.image = "debian";
  EXPECT_TRUE(build_vm_body(sp, s).error().is(errc::cloud_permanent));
}

TEST(AzureWire, ReservationAndGroupBodies) {
  const auto s = settings();
  reservation_spec r;
  r.reservation_id = "0192f5c4-0000-7000-8000-000000000001";
  r.name = "cbr-0192f5c4-0000-7000-8000-000000000001";
  r.instance_type = "premium";
  r.count = 20;
  r.zone = "3";
  r.tags = {{"run", "nightly-42"}};
  r.deployment = "prod";
  auto body = build_reservation_body(r, s);
  ASSERT_TRUE(body);
  const json::value v = *body;
  EXPECT_EQ(at(v, {"sku", "name"}), "Standard_D4s_v5");
  EXPECT_EQ(at(v, {"sku", "capacity"}), 20);
  EXPECT_EQ(at(v, {"zones"}), json::array{"3"});
  EXPECT_EQ(at(v, {"location"}), "eastus");
  EXPECT_EQ(at(v, {"tags", "cloudbrain-deployment"}), "prod");
  EXPECT_EQ(at(v, {"tags", "cloudbrain-reservation"}), json::value(r.reservation_id));
  EXPECT_EQ(at(v, {"tags", "run"}), "nightly-42");
  r.count = 0;
  EXPECT_TRUE(build_reservation_body(r, s).error().is(errc::cloud_permanent));

  const json::value g = build_group_body(s, "prod");
  EXPECT_EQ(at(g, {"zones"}), (json::array{"1", "2", "3"}));
  EXPECT_EQ(at(g, {"tags", "cloudbrain-deployment"}), "prod");
  EXPECT_EQ(json::value(build_capacity_patch(0)), json::parse(R"({"sku":{"capacity":0}})"));
  EXPECT_EQ(json::value(build_leave_group_patch()),
            json::parse(R"({"properties":{"capacityReservation":)"
                        R"({"capacityReservationGroup":{"id":null}}}})"));
}

// ---- VMs as ARM reports them ----------------------------------------------------------------

TEST(AzureWire, AVmJustCreatedWithItsNicConfiguration) {
  auto v = parse_vm(payload("vm_create_nic_configuration_201.json"));
  ASSERT_TRUE(v) << v.error().detail;
  EXPECT_EQ(v->name, "myVM");
  EXPECT_EQ(v->vm_id, "b7a098cc-b0b8-46e8-a205-62f301a62a8f");
  EXPECT_EQ(v->provisioning_state, "Creating");
  ASSERT_EQ(v->nic_ids.size(), 1u);
  EXPECT_TRUE(v->nic_ids[0].ends_with("/networkInterfaces/toBeCreatedNetworkInterface"));
  EXPECT_EQ(status_of(*v), vm_status::provisioning);
  EXPECT_EQ(to_vm(*v).upstream_id, "b7a098cc-b0b8-46e8-a205-62f301a62a8f");
}

TEST(AzureWire, AVmInAReservationGroup) {
  auto v = parse_vm(payload("vm_create_capacity_reservation_200.json"));
  ASSERT_TRUE(v);
  EXPECT_TRUE(v->capacity_reservation_group.ends_with("/CapacityReservationGroups/{crgName}"));
}

TEST(AzureWire, TheInstanceViewSaysWhetherItRuns) {
  const std::string view = payload("vm_instance_view.json");
  const std::string body = R"({"name":"myVM","type":"Microsoft.Compute/virtualMachines",)"
                           R"("properties":{"provisioningState":"Succeeded","instanceView":)" +
                           view + "}}";
  auto v = parse_vm(body);
  ASSERT_TRUE(v) << v.error().detail;
  EXPECT_EQ(v->power_state, "running");
  EXPECT_FALSE(v->failure);
  EXPECT_EQ(status_of(*v), vm_status::running);

  auto running = parse_vm(payload("emulator_vm_running.json"));
  ASSERT_TRUE(running);
  EXPECT_EQ(status_of(*running), vm_status::running);
  EXPECT_EQ(running->zone, "1");
  EXPECT_NE(running->created_at, system_clock::time_point{});
  EXPECT_EQ(running->tags.at("cloudbrain-deployment"), "ci");
}

TEST(AzureWire, AFailedAllocationIsSeenWithItsCode) {
  auto v = parse_vm(payload("emulator_vm_failed_allocation.json"));
  ASSERT_TRUE(v);
  EXPECT_EQ(v->provisioning_state, "Failed");
  EXPECT_EQ(lro_status_of_state(v->provisioning_state), lro_status::failed);
  ASSERT_TRUE(v->failure);
  EXPECT_EQ(v->failure->code, "ZonalAllocationFailed");
  EXPECT_NE(v->failure->message.find("sufficient capacity"), std::string::npos);
  EXPECT_EQ(status_of(*v), vm_status::provisioning);
}

TEST(AzureWire, PowerStatesAndDeletion) {
  arm_vm v;
  v.provisioning_state = "Succeeded";
  v.power_state = "deallocated";
  EXPECT_EQ(status_of(v), vm_status::terminated);
  v.power_state = "stopping";
  EXPECT_EQ(status_of(v), vm_status::stopping);
  v.power_state = "starting";
  EXPECT_EQ(status_of(v), vm_status::provisioning);
  v.power_state.clear();  // a list has no instance view
  EXPECT_EQ(status_of(v), vm_status::running);
  v.provisioning_state = "Deleting";
  EXPECT_EQ(status_of(v), vm_status::stopping);
  EXPECT_FALSE(parse_vm("<html>"));
  EXPECT_TRUE(parse_vm("<html>").error().is(errc::cloud_transient));
  EXPECT_FALSE(parse_vm(R"({"name":"x","type":"Microsoft.Network/networkInterfaces"})"));
}

TEST(AzureWire, ListsArePagedByNextLink) {
  auto page = parse_vm_list(payload("emulator_vm_list_page.json"));
  ASSERT_TRUE(page) << page.error().detail;
  ASSERT_EQ(page->items.size(), 1u);
  EXPECT_EQ(page->items[0].name, "cb-a");
  EXPECT_TRUE(page->next_link.starts_with("https://management.azure.com/subscriptions/"));
  EXPECT_NE(page->next_link.find("skiptoken"), std::string::npos);
  auto last = parse_vm_list(R"({"value":[]})");
  ASSERT_TRUE(last);
  EXPECT_TRUE(last->next_link.empty());
  EXPECT_FALSE(parse_vm_list(R"({"error":{"code":"x"}})"));
  EXPECT_FALSE(parse_vm_list(R"({"value":{}})"));
}

TEST(AzureWire, TheAddressIsOnTheNic) {
  auto spec_nic = payload("network_interface_get.json");
  auto pub = parse_nic_address(spec_nic, true);
  ASSERT_TRUE(pub);
  EXPECT_FALSE(*pub);  // the public IP is only referenced, not expanded
  auto priv = parse_nic_address(spec_nic, false);
  ASSERT_TRUE(priv);
  EXPECT_EQ(**priv, "172.20.2.4");  // the primary configuration's
  auto expanded = parse_nic_address(payload("emulator_nic_with_public_ip.json"), true);
  ASSERT_TRUE(expanded);
  ASSERT_TRUE(*expanded);
  EXPECT_TRUE(expanded->value().starts_with("203.0.113."));
  EXPECT_FALSE(parse_nic_address("{}", true));
}

// ---- long-running operations and errors ------------------------------------------------------

TEST(AzureWire, OperationStatusBodies) {
  auto ok = parse_async_operation(payload("emulator_operation_succeeded.json"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, lro_status::succeeded);
  EXPECT_FALSE(ok->error);
  auto failed = parse_async_operation(payload("emulator_operation_zonal_allocation_failed.json"));
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->status, lro_status::failed);
  ASSERT_TRUE(failed->error);
  const error e = error_from_arm(*failed->error, 0);
  EXPECT_TRUE(e.is(errc::cloud_capacity));
  EXPECT_NE(e.detail.find("ZonalAllocationFailed"), std::string::npos);
  EXPECT_EQ(parse_async_operation(R"({"status":"InProgress"})")->status, lro_status::in_progress);
  EXPECT_EQ(parse_async_operation(R"({"status":"Accepted"})")->status, lro_status::in_progress);
  EXPECT_EQ(parse_async_operation(R"({"status":"Canceled"})")->status, lro_status::canceled);
  EXPECT_TRUE(parse_async_operation("{}").error().is(errc::cloud_transient));
  EXPECT_TRUE(parse_async_operation("bad gateway").error().is(errc::cloud_transient));
}

TEST(AzureWire, ErrorsAreSortedIntoKinds) {
  EXPECT_TRUE(error_from_response(409, payload("emulator_error_sku_not_available.json"))
                  .is(errc::cloud_capacity));
  const error quota = error_from_response(409, payload("emulator_error_quota.json"));
  EXPECT_TRUE(quota.is(errc::cloud_quota));
  EXPECT_NE(quota.detail.find("Cores quota"), std::string::npos);
  EXPECT_TRUE(error_from_response(429, payload("emulator_error_throttled.json"))
                  .is(errc::cloud_rate_limited));
  EXPECT_TRUE(
      error_from_response(404, payload("emulator_error_not_found.json")).is(errc::cloud_not_found));
  EXPECT_TRUE(
      error_from_response(401, payload("emulator_error_invalid_token.json")).is(errc::cloud_auth));
  const error aad = error_from_response(401, payload("emulator_entra_invalid_client.json"));
  EXPECT_TRUE(aad.is(errc::cloud_auth));
  EXPECT_NE(aad.detail.find("AADSTS7000215"), std::string::npos);
  EXPECT_TRUE(error_from_response(502, "<html>Bad Gateway</html>").is(errc::cloud_transient));
  EXPECT_TRUE(error_from_response(503, "").is(errc::cloud_transient));
  EXPECT_TRUE(
      error_from_response(409, R"({"error":{"code":"PropertyChangeNotAllowed","message":"zones"}})")
          .is(errc::cloud_already_exists));
  EXPECT_TRUE(error_from_response(404, R"({"error":{"code":"ResourceGroupNotFound",)"
                                       R"("message":"Resource group 'x' could not be found."}})")
                  .is(errc::cloud_permanent));
  EXPECT_TRUE(error_from_response(404, R"({"error":{"code":"PlatformImageNotFound","message":""}})")
                  .is(errc::cloud_permanent));
  EXPECT_TRUE(error_from_response(400, R"({"error":{"code":"InvalidParameter","message":"m"}})")
                  .is(errc::cloud_permanent));
  EXPECT_TRUE(
      error_from_response(409, R"({"error":{"code":"OperationNotAllowed","message":"VM busy"}})")
          .is(errc::cloud_permanent));
  // ARM wraps the reason in a generic error; its details decide.
  const error wrapped = error_from_response(
      409, R"({"error":{"code":"Conflict","message":"The operation failed.",)"
           R"("details":[{"code":"OverconstrainedAllocationRequest","message":"Allocation )"
           R"(failed."}]}})");
  EXPECT_TRUE(wrapped.is(errc::cloud_capacity));
  EXPECT_NE(wrapped.detail.find("Allocation failed."), std::string::npos);
  EXPECT_TRUE(error_from_response(429, R"({"error":{"code":"OperationNotAllowed",)"
                                       R"("message":"too many requests"}})")
                  .is(errc::cloud_rate_limited));
}

TEST(AzureWire, RateLimitHeaders) {
  net::http::fields r;
  EXPECT_FALSE(ratelimit_remaining_of(r));
  r.set("x-ms-ratelimit-remaining-subscription-writes", "1199");
  r.set("x-ms-ratelimit-remaining-resource",
        "Microsoft.Compute/PutVM3Min;239,Microsoft.Compute/PutVM30Min;1197");
  EXPECT_EQ(ratelimit_remaining_of(r), 239);
  r.set("x-ms-ratelimit-remaining-subscription-reads", "0");
  EXPECT_EQ(ratelimit_remaining_of(r), 0);
}

// ---- capacity reservations ------------------------------------------------------------------

TEST(AzureWire, ACapacityReservationAsArmReportsIt) {
  auto r = parse_reservation(payload("capacity_reservation_get.json"));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->reservation.name, "myCapacityReservation");
  EXPECT_EQ(r->reservation.zone, "1");
  EXPECT_EQ(r->reservation.machine_type, "Standard_DS1_v2");
  EXPECT_EQ(r->reservation.count, 4);
  EXPECT_EQ(r->reservation.in_use, 3);
  EXPECT_EQ(r->reservation.status, reservation_status::ready);
  EXPECT_EQ(r->reservation.labels_.at("department"), "HR");
  EXPECT_NE(r->reservation.created_at, system_clock::time_point{});
  ASSERT_EQ(r->associated_vms.size(), 3u);
  EXPECT_TRUE(r->associated_vms[2].ends_with("/virtualMachines/myVM3"));

  auto creating = parse_reservation(payload("capacity_reservation_create_201.json"));
  ASSERT_TRUE(creating);
  EXPECT_EQ(creating->reservation.status, reservation_status::creating);
  EXPECT_TRUE(creating->associated_vms.empty());

  auto list = parse_reservation_list(payload("capacity_reservation_list.json"));
  ASSERT_TRUE(list);
  ASSERT_EQ(list->items.size(), 2u);
  EXPECT_EQ(list->items[1].reservation.machine_type, "Standard_A1_v2");
  EXPECT_EQ(list->items[1].reservation.in_use, 1);
  EXPECT_TRUE(list->next_link.empty());

  // A capacity that is no whole count (found by fuzzing: 4.7e51 overflowed the conversion) is
  // a reservation ARM did not describe, not a number made of it.
  for (const char* cap : {"4.666666666666666e51", "-1e300", "2.5", "3.0", "1e2"}) {
    const std::string body =
        std::string(R"({"name":"r","sku":{"name":"Standard_A1_v2","capacity":)") + cap + "}}";
    const bool whole = std::string_view(cap) == "3.0" || std::string_view(cap) == "1e2";
    auto parsed = parse_reservation(body);
    EXPECT_EQ(static_cast<bool>(parsed), whole) << cap;
    if (parsed && whole) EXPECT_EQ(parsed->reservation.count, cap[0] == '3' ? 3 : 100) << cap;
  }

  EXPECT_EQ(reservation_status_of("Failed"), reservation_status::invalid);
  EXPECT_EQ(reservation_status_of("Deleting"), reservation_status::deleting);
  EXPECT_EQ(reservation_status_of("Updating"), reservation_status::updating);
}

// ---- tokens ---------------------------------------------------------------------------------

TEST(AzureWire, ClientCredentialsAndManagedIdentity) {
  const auto s = settings();
  EXPECT_EQ(token_url(s),
            "https://login.microsoftonline.com/11111111-1111-1111-1111-111111111111/oauth2/v2.0/"
            "token");
  EXPECT_EQ(arm_scope(s), "http://127.0.0.1:8443/.default");
  EXPECT_EQ(client_credentials_body(s.client_id, s.client_secret, arm_scope(s)),
            "grant_type=client_credentials&client_id=22222222-2222-2222-2222-222222222222&"
            "client_secret=a%26b%3Dc%20d%2Be&scope=http%3A%2F%2F127.0.0.1%3A8443%2F.default");
  EXPECT_EQ(imds_token_url(s),
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&"
            "resource=http%3A%2F%2F127.0.0.1%3A8443%2F&client_id=22222222-2222-2222-2222-"
            "222222222222");

  const auto now = system_clock::from_time_t(1'800'000'000);
  auto entra = parse_token_response(payload("emulator_entra_token.json"), now);
  ASSERT_TRUE(entra);
  EXPECT_FALSE(entra->token.empty());
  EXPECT_EQ(entra->expires_at, now + std::chrono::seconds(3600));
  auto imds = parse_token_response(payload("emulator_imds_token.json"), now);
  ASSERT_TRUE(imds);
  EXPECT_EQ(imds->expires_at, now + std::chrono::seconds(3600));  // expires_in as a string
  auto on_only = parse_token_response(R"({"access_token":"t","expires_on":"1800000100"})", now);
  ASSERT_TRUE(on_only);
  EXPECT_EQ(on_only->expires_at, now + std::chrono::seconds(100));
  // An expires_on in the past, past a week, or past what the clock holds (found by fuzzing:
  // it overflowed system_clock) is no expiry.
  for (const char* on : {"1799999999", "1800700000", "1796565695695", "9223372036854775807"}) {
    const std::string body = std::string(R"({"access_token":"t","expires_on":")") + on + "\"}";
    EXPECT_FALSE(parse_token_response(body, now)) << on;
  }
  EXPECT_FALSE(parse_token_response(R"({"access_token":"t"})", now));
  EXPECT_FALSE(parse_token_response(R"({"expires_in":10})", now));
  auto garbled = parse_token_response("access_token=secret-value", now);
  ASSERT_FALSE(garbled);
  EXPECT_EQ(garbled.error().detail.find("secret-value"), std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::providers::azure
