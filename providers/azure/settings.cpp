#include "providers/azure/settings.hpp"

#include "providers/section_values.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

namespace cloudbrain::providers::azure {
namespace {

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// 00000000-0000-0000-0000-000000000000
bool valid_guid(std::string_view s) {
  if (s.size() != 36) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_hex(s[i])) return false;
  }
  return true;
}

// A tenant is its id or one of its domain names (contoso.onmicrosoft.com).
bool valid_tenant(std::string_view s) {
  if (valid_guid(s)) return true;
  return !s.empty() && s.size() <= 253 && s.find('.') != std::string_view::npos &&
         s.front() != '.' && s.back() != '.' && std::all_of(s.begin(), s.end(), [](char c) {
           return is_alnum(c) || c == '-' || c == '.';
         });
}

// Resource group names: letters, digits, '_', '-', '.', '(' and ')', not ending in '.'.
bool valid_resource_group(std::string_view s) {
  return !s.empty() && s.size() <= 90 && s.back() != '.' &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return is_alnum(c) || c == '_' || c == '-' || c == '.' || c == '(' || c == ')';
         });
}

// eastus, westeurope, eastus2: what `az account list-locations` calls a name.
bool valid_location(std::string_view s) {
  return !s.empty() && s.size() <= 40 && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
  });
}

bool valid_zone(std::string_view s) {
  return !s.empty() && s.size() <= 3 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Standard_D2s_v5, Standard_NC24ads_A100_v4.
bool valid_vm_size(std::string_view s) {
  return !s.empty() && s.size() <= 64 &&
         ((s.front() >= 'A' && s.front() <= 'Z') || (s.front() >= 'a' && s.front() <= 'z')) &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

// Capacity reservation group names.
bool valid_group_name(std::string_view s) {
  return !s.empty() && s.size() <= 80 && is_alnum(s.front()) &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '-' || c == '.'; });
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; };
           return lower(x) == lower(y);
         });
}

// /subscriptions/S/resourceGroups/G/providers/Microsoft.Network/virtualNetworks/V/subnets/N
bool valid_subnet_id(std::string_view s) {
  std::vector<std::string_view> parts;
  if (s.empty() || s.front() != '/') return false;
  s.remove_prefix(1);
  while (!s.empty()) {
    const auto slash = s.find('/');
    const auto part = s.substr(0, slash);
    if (part.empty()) return false;
    if (std::any_of(part.begin(), part.end(),
                    [](char c) { return c <= ' ' || c == '?' || c == '#' || c == '"'; }))
      return false;
    parts.push_back(part);
    if (slash == std::string_view::npos) break;
    s.remove_prefix(slash + 1);
  }
  return parts.size() == 10 && iequals(parts[0], "subscriptions") && valid_guid(parts[1]) &&
         iequals(parts[2], "resourceGroups") && valid_resource_group(parts[3]) &&
         iequals(parts[4], "providers") && iequals(parts[5], "Microsoft.Network") &&
         iequals(parts[6], "virtualNetworks") && iequals(parts[8], "subnets");
}

// Azure refuses these as the admin user of a Linux VM.
constexpr std::array reserved_users{"administrator",
                                    "admin",
                                    "user",
                                    "user1",
                                    "test",
                                    "user2",
                                    "test1",
                                    "user3",
                                    "admin1",
                                    "1",
                                    "123",
                                    "a",
                                    "actuser",
                                    "adm",
                                    "admin2",
                                    "aspnet",
                                    "backup",
                                    "console",
                                    "david",
                                    "guest",
                                    "john",
                                    "owner",
                                    "root",
                                    "server",
                                    "sql",
                                    "support",
                                    "support_388945a0",
                                    "sys",
                                    "test2",
                                    "test3",
                                    "user4",
                                    "user5"};

bool valid_ssh_user(std::string_view s) {
  if (s.empty() || s.size() > 64 || s.back() == '.' || s.back() == '-') return false;
  if (!((s.front() >= 'a' && s.front() <= 'z') || s.front() == '_')) return false;
  if (!std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
      }))
    return false;
  return std::none_of(reserved_users.begin(), reserved_users.end(),
                      [&](const char* r) { return s == r; });
}

constexpr std::array disk_types{"Standard_LRS", "StandardSSD_LRS", "Premium_LRS", "StandardSSD_ZRS",
                                "Premium_ZRS",  "PremiumV2_LRS",   "UltraSSD_LRS"};

bool valid_http_url(std::string_view s) {
  auto u = boost::urls::parse_absolute_uri(s);
  return u && (u->scheme() == "http" || u->scheme() == "https") && !u->encoded_host().empty() &&
         u->encoded_query().empty() && u->encoded_fragment().empty();
}

std::string without_trailing_slash(std::string s) {
  while (!s.empty() && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

result<azure_settings> azure_settings::from_section(const provider_section& section) {
  azure_settings a;
  a.name = section.name;
  const std::string where = "[provider." + section.name + "] ";
  auto bad = [&](const std::string& key, const std::string& value, const std::string& why) {
    return fail(errc::bad_config, where + "'" + key + "' " + why + ", not '" + value + "'");
  };

  for (const auto& [key, value] : section.settings) {
    if (key == "subscription") {
      if (!valid_guid(value)) return bad(key, value, "must be a subscription id (a GUID)");
      a.subscription = value;
    } else if (key == "resource-group") {
      if (!valid_resource_group(value)) return bad(key, value, "must be a resource group name");
      a.resource_group = value;
    } else if (key == "location") {
      if (!valid_location(value)) return bad(key, value, "must be a location name like eastus");
      a.location = value;
    } else if (key == "tenant") {
      if (!valid_tenant(value)) return bad(key, value, "must be a tenant id or domain");
      a.tenant = value;
    } else if (key == "client-id") {
      if (!valid_guid(value)) return bad(key, value, "must be an application (client) id");
      a.client_id = value;
    } else if (key == "client-secret") {
      // Never echoed back: it is a secret.
      if (value.empty() || value.find_first_of("\r\n") != std::string::npos) {
        return fail(errc::bad_config,
                    where + "'client-secret' must be one line of text (or @/path to a file)");
      }
      if (value.front() == '@') {
        if (value.size() < 2) {
          return fail(errc::bad_config, where + "'client-secret' = @ needs a file's path after it");
        }
        a.client_secret_file = value.substr(1);
      } else {
        a.client_secret = value;
      }
    } else if (key == "subnet") {
      if (!valid_subnet_id(value)) {
        return bad(key, value,
                   "must be a subnet resource id (/subscriptions/S/resourceGroups/G/providers/"
                   "Microsoft.Network/virtualNetworks/V/subnets/N)");
      }
      a.subnet = value;
    } else if (key == "standard-vm-size" || key == "premium-vm-size") {
      if (!valid_vm_size(value)) return bad(key, value, "must be a VM size like Standard_D2s_v5");
      (key == "standard-vm-size" ? a.standard_vm_size : a.premium_vm_size) = value;
    } else if (key == "ssh-user") {
      if (!valid_ssh_user(value)) {
        return bad(key, value,
                   "must be a Linux user name that Azure allows (not root, admin, ...)");
      }
      a.ssh_user = value;
    } else if (key == "public-ip") {
      const auto b = parse_switch(value);
      if (!b) return bad(key, value, "must be true or false");
      a.public_ip = *b;
    } else if (key == "os-disk-type") {
      const std::string_view wanted = value;
      if (std::none_of(disk_types.begin(), disk_types.end(),
                       [wanted](const char* t) { return wanted == t; })) {
        return bad(key, value,
                   "must be one of Standard_LRS, StandardSSD_LRS, Premium_LRS, StandardSSD_ZRS, "
                   "Premium_ZRS, PremiumV2_LRS, UltraSSD_LRS");
      }
      a.os_disk_type = value;
    } else if (key == "os-disk-size-gb") {
      unsigned n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 1 || n > 4095) {
        return bad(key, value, "must be a whole number of GB from 1 to 4095");
      }
      a.os_disk_size_gb = n;
    } else if (key == "capacity-reservation-group") {
      if (!valid_group_name(value)) {
        return bad(key, value, "must be a name of letters, digits, '_', '-' and '.'");
      }
      a.capacity_reservation_group = value;
    } else if (key == "login-endpoint" || key == "imds-endpoint") {
      if (!valid_http_url(value)) return bad(key, value, "must be an http(s) URL");
      (key == "login-endpoint" ? a.login_endpoint : a.imds_endpoint) =
          without_trailing_slash(value);
    } else if (key == "ca-file") {
      a.ca_file = value;
    } else {
      return fail(errc::bad_config,
                  where + "unknown key '" + key +
                      "' for type azure (known: zones, endpoint, rate-limit, max-in-flight, "
                      "subscription, resource-group, location, tenant, client-id, client-secret, "
                      "subnet, standard-vm-size, premium-vm-size, ssh-user, public-ip, "
                      "os-disk-type, os-disk-size-gb, capacity-reservation-group, "
                      "login-endpoint, imds-endpoint, ca-file)");
    }
  }

  auto required = [&](const std::string& value, const char* key) -> std::optional<error> {
    if (!value.empty()) return std::nullopt;
    return fail(errc::bad_config, where + "'" + key + "' is required for type azure");
  };
  for (auto [value, key] :
       {std::pair{&a.subscription, "subscription"}, std::pair{&a.resource_group, "resource-group"},
        std::pair{&a.location, "location"}, std::pair{&a.subnet, "subnet"}}) {
    if (auto e = required(*value, key)) return *e;
  }
  if (a.auth() == auth_method::client_secret) {
    if (a.client_id.empty()) {
      return fail(errc::bad_config, where +
                                        "'client-secret' needs 'client-id' (the application "
                                        "the secret belongs to)");
    }
    if (a.tenant.empty()) {
      return fail(errc::bad_config,
                  where + "'tenant' is required with 'client-secret' (client credentials)");
    }
  }
  if (section.zones.empty())
    return fail(errc::bad_config, where + "'zones' is required for type azure");
  for (const auto& z : section.zones) {
    if (!valid_zone(z)) return bad("zones", z, "must list availability zones like 1 2 3");
  }
  for (std::size_t i = 0; i < section.zones.size(); ++i) {
    for (std::size_t j = i + 1; j < section.zones.size(); ++j) {
      if (section.zones[i] == section.zones[j]) {
        return bad("zones", section.zones[i], "must not list a zone twice");
      }
    }
  }
  a.zones = section.zones;
  if (!section.endpoint.empty()) {
    if (!valid_http_url(section.endpoint))
      return bad("endpoint", section.endpoint, "must be an http(s) URL");
    a.endpoint = without_trailing_slash(section.endpoint);
  }
  if (a.capacity_reservation_group.empty()) {
    std::string g = "cloudbrain-";
    for (char c : section.name) g += (is_alnum(c) || c == '_' || c == '-' || c == '.') ? c : '-';
    a.capacity_reservation_group = g.substr(0, 80);
  }
  return a;
}

result<std::string> azure_settings::vm_size_for(std::string_view instance_type) const {
  if (instance_type.empty() || instance_type == "standard") return standard_vm_size;
  if (instance_type == "premium") return premium_vm_size;
  return fail(errc::cloud_permanent,
              "unknown instance type '" + std::string(instance_type) + "' (standard or premium)");
}

}  // namespace cloudbrain::providers::azure
