#include "providers/azure/settings.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers::azure {
namespace {

constexpr const char* subnet_id =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/net/providers/"
    "Microsoft.Network/virtualNetworks/v/subnets/default";

provider_section section(std::map<std::string, std::string> extra = {}) {
  provider_section s;
  s.name = "azure";
  s.type = "azure";
  s.zones = {"1", "2", "3"};
  s.settings = {{"subscription", "00000000-0000-0000-0000-000000000000"},
                {"resource-group", "cloudbrain"},
                {"location", "eastus"},
                {"subnet", subnet_id}};
  for (auto& [k, v] : extra) s.settings[k] = v;
  return s;
}

std::string error_of(const provider_section& s) {
  auto r = azure_settings::from_section(s);
  EXPECT_FALSE(r) << "expected an error";
  return r ? std::string() : r.error().detail;
}

TEST(AzureSettings, TheContractsSectionParses) {
  auto r = azure_settings::from_section(section({
      {"tenant", "11111111-1111-1111-1111-111111111111"},
      {"client-id", "22222222-2222-2222-2222-222222222222"},
      {"client-secret", "s3cr3t~value"},
      {"standard-vm-size", "Standard_D2s_v5"},
      {"premium-vm-size", "Standard_D4s_v5"},
      {"ssh-user", "azureuser"},
      {"login-endpoint", "https://login.microsoftonline.com/"},
  }));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->subscription, "00000000-0000-0000-0000-000000000000");
  EXPECT_EQ(r->resource_group, "cloudbrain");
  EXPECT_EQ(r->location, "eastus");
  EXPECT_EQ(r->zones, (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(r->subnet, subnet_id);
  EXPECT_EQ(r->auth(), auth_method::client_secret);
  EXPECT_EQ(r->login_endpoint, "https://login.microsoftonline.com");
  EXPECT_EQ(r->endpoint, "https://management.azure.com");
  EXPECT_EQ(r->capacity_reservation_group, "cloudbrain-azure");
  EXPECT_TRUE(r->public_ip);
  EXPECT_EQ(r->vm_size_for("standard").value(), "Standard_D2s_v5");
  EXPECT_EQ(r->vm_size_for("").value(), "Standard_D2s_v5");
  EXPECT_EQ(r->vm_size_for("premium").value(), "Standard_D4s_v5");
  EXPECT_FALSE(r->vm_size_for("huge"));
}

TEST(AzureSettings, WithoutASecretItIsTheManagedIdentity) {
  auto system = azure_settings::from_section(section());
  ASSERT_TRUE(system);
  EXPECT_EQ(system->auth(), auth_method::managed_identity);
  EXPECT_TRUE(system->client_id.empty());
  auto user =
      azure_settings::from_section(section({{"client-id", "22222222-2222-2222-2222-222222222222"},
                                            {"imds-endpoint", "http://127.0.0.1:9999/"}}));
  ASSERT_TRUE(user);
  EXPECT_EQ(user->auth(), auth_method::managed_identity);
  EXPECT_EQ(user->client_id, "22222222-2222-2222-2222-222222222222");
  EXPECT_EQ(user->imds_endpoint, "http://127.0.0.1:9999");
}

TEST(AzureSettings, RequiredKeysAreNamed) {
  for (const char* key : {"subscription", "resource-group", "location", "subnet"}) {
    auto s = section();
    s.settings.erase(key);
    EXPECT_NE(error_of(s).find(std::string("'") + key + "' is required"), std::string::npos) << key;
  }
  auto s = section();
  s.zones.clear();
  EXPECT_NE(error_of(s).find("'zones' is required"), std::string::npos);
}

TEST(AzureSettings, BadValuesAreNamedWithWhatIsExpected) {
  EXPECT_NE(error_of(section({{"subscription", "my-sub"}})).find("GUID"), std::string::npos);
  EXPECT_NE(error_of(section({{"location", "East US"}})).find("'location'"), std::string::npos);
  EXPECT_NE(error_of(section({{"resource-group", "bad/name"}})).find("'resource-group'"),
            std::string::npos);
  EXPECT_NE(error_of(section({{"subnet", "default"}})).find("subnet resource id"),
            std::string::npos);
  EXPECT_NE(error_of(section({{"standard-vm-size", "D2s v5"}})).find("'standard-vm-size'"),
            std::string::npos);
  EXPECT_NE(error_of(section({{"ssh-user", "root"}})).find("'ssh-user'"), std::string::npos);
  EXPECT_NE(error_of(section({{"ssh-user", "admin"}})).find("not root, admin"), std::string::npos);
  EXPECT_NE(error_of(section({{"public-ip", "maybe"}})).find("true or false"), std::string::npos);
  EXPECT_NE(error_of(section({{"os-disk-type", "SSD"}})).find("Premium_LRS"), std::string::npos);
  EXPECT_NE(error_of(section({{"os-disk-size-gb", "0"}})).find("1 to 4095"), std::string::npos);
  EXPECT_NE(error_of(section({{"login-endpoint", "ftp://x"}})).find("http(s) URL"),
            std::string::npos);
  auto s = section();
  s.endpoint = "not a url";
  EXPECT_NE(error_of(s).find("'endpoint'"), std::string::npos);
  s = section();
  s.zones = {"1", "east"};
  EXPECT_NE(error_of(s).find("availability zones like 1 2 3"), std::string::npos);
  s.zones = {"1", "1"};
  EXPECT_NE(error_of(s).find("twice"), std::string::npos);
}

TEST(AzureSettings, UnknownKeysAreRefusedByName) {
  const auto e = error_of(section({{"project", "x"}}));
  EXPECT_NE(e.find("unknown key 'project' for type azure"), std::string::npos);
  EXPECT_NE(e.find("client-secret"), std::string::npos);  // the list of known keys
}

TEST(AzureSettings, ASecretNeedsItsApplicationAndTenantAndIsNeverEchoed) {
  EXPECT_NE(error_of(section({{"client-secret", "hunter2-value"}})).find("needs 'client-id'"),
            std::string::npos);
  EXPECT_NE(error_of(section({{"client-secret", "hunter2-value"},
                              {"client-id", "22222222-2222-2222-2222-222222222222"}}))
                .find("'tenant' is required"),
            std::string::npos);
  const auto e = error_of(section({{"client-secret", "line1\nhunter2-value"}}));
  EXPECT_NE(e.find("one line"), std::string::npos);
  EXPECT_EQ(e.find("hunter2"), std::string::npos);
  EXPECT_NE(error_of(section({{"client-id", "app"}})).find("'client-id'"), std::string::npos);
  EXPECT_NE(error_of(section({{"tenant", "not a tenant"}})).find("'tenant'"), std::string::npos);
  auto by_domain = azure_settings::from_section(section({{"tenant", "contoso.onmicrosoft.com"}}));
  EXPECT_TRUE(by_domain);
}

TEST(AzureSettings, TheSecretMayLiveInAFile) {
  auto r =
      azure_settings::from_section(section({{"tenant", "11111111-1111-1111-1111-111111111111"},
                                            {"client-id", "22222222-2222-2222-2222-222222222222"},
                                            {"client-secret", "@/run/credentials/azure-secret"}}));
  ASSERT_TRUE(r) << r.error().detail;
  EXPECT_EQ(r->client_secret_file, "/run/credentials/azure-secret");
  EXPECT_TRUE(r->client_secret.empty());
  EXPECT_EQ(r->auth(), auth_method::client_secret);
  EXPECT_NE(error_of(section({{"client-secret", "@"}})).find("a file's path"), std::string::npos);
  EXPECT_NE(error_of(section({{"client-secret", "@/x"}})).find("needs 'client-id'"),
            std::string::npos);
}

TEST(AzureSettings, TheReservationGroupNameFollowsTheProvider) {
  auto s = section();
  s.name = "azure-eu/west";
  auto r = azure_settings::from_section(s);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->capacity_reservation_group, "cloudbrain-azure-eu-west");
  auto named = azure_settings::from_section(section({{"capacity-reservation-group", "ci-crg"}}));
  ASSERT_TRUE(named);
  EXPECT_EQ(named->capacity_reservation_group, "ci-crg");
  EXPECT_NE(error_of(section({{"capacity-reservation-group", "-bad"}}))
                .find("'capacity-reservation-group'"),
            std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::providers::azure
