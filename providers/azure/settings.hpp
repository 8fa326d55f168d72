#pragma once

#include "core/config.hpp"
#include "core/error.hpp"

#include <string>
#include <vector>

namespace cloudbrain::providers::azure {

inline constexpr const char* default_endpoint = "https://management.azure.com";
inline constexpr const char* default_login_endpoint = "https://login.microsoftonline.com";
inline constexpr const char* default_imds_endpoint = "http://169.254.169.254";

// How the driver gets its tokens: an app registration's secret (Entra ID client credentials),
// or the VM's managed identity from IMDS (system-assigned, or user-assigned by client id).
enum class auth_method { client_secret, managed_identity };

// A [provider.NAME] section of type azure, checked and with its defaults filled in.
struct azure_settings {
  std::string name;  // the provider's name, for messages
  std::vector<std::string> zones;
  std::string endpoint = default_endpoint;  // no trailing '/'
  std::string login_endpoint = default_login_endpoint;
  std::string imds_endpoint = default_imds_endpoint;
  std::string subscription;
  std::string resource_group;
  std::string location;
  std::string tenant;
  std::string client_id;      // empty with managed identity: the system-assigned one
  std::string client_secret;  // never logged; empty: managed identity (or a secret file)
  // client-secret = @/path: the file the secret is read from (on the blocking pool, when the
  // first token is fetched, and again after Entra ID refused it: it may have been rotated).
  std::string client_secret_file;
  std::string subnet;  // a subnet's resource id
  std::string standard_vm_size = "Standard_D2s_v5";
  std::string premium_vm_size = "Standard_D4s_v5";
  std::string ssh_user = "azureuser";
  bool public_ip = true;
  std::string os_disk_type = "StandardSSD_LRS";
  unsigned os_disk_size_gb = 0;            // 0: the image's size
  std::string capacity_reservation_group;  // default: cloudbrain-<provider name>
  std::string ca_file;

  [[nodiscard]] auth_method auth() const {
    return client_secret.empty() && client_secret_file.empty() ? auth_method::managed_identity
                                                               : auth_method::client_secret;
  }

  // Any unknown key or bad value is errc::bad_config naming it.
  [[nodiscard]] static result<azure_settings> from_section(const provider_section& section);

  // The VM size for an instance_type (standard | premium); anything else is an error.
  [[nodiscard]] result<std::string> vm_size_for(std::string_view instance_type) const;
};

}  // namespace cloudbrain::providers::azure
