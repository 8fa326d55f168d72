#pragma once

#include "core/config.hpp"
#include "core/error.hpp"

#include <string>
#include <vector>

namespace cloudbrain::providers::gce {

inline constexpr const char* default_endpoint = "https://compute.googleapis.com";

// A [provider.NAME] section of type gce, checked and with its defaults filled in.
struct gce_settings {
  std::string name;  // the provider's name, for messages
  std::vector<std::string> zones;
  std::string endpoint = default_endpoint;  // no trailing '/' and no "/compute/v1"
  std::string project;
  std::string credentials;  // service-account key file; empty: the metadata server
  std::string image_project;
  std::string standard_machine_type = "n1-standard-2";
  std::string premium_machine_type = "n1-standard-4";
  std::string ssh_user = "cloudbrain";
  std::string network = "global/networks/default";
  std::string subnetwork;  // empty: the network's default for the region
  unsigned disk_size_gb = 20;
  std::string disk_type = "pd-balanced";
  bool external_ip = true;
  bool preemptible = false;
  bool spot = false;
  std::string ca_file;
  std::string metadata_host = "metadata.google.internal";
  std::string token_uri_override;

  // Any unknown key or bad value is errc::bad_config naming it.
  [[nodiscard]] static result<gce_settings> from_section(const provider_section& section);

  // The machine type for an instance_type (standard | premium); anything else is an error.
  [[nodiscard]] result<std::string> machine_type_for(std::string_view instance_type) const;
};

}  // namespace cloudbrain::providers::gce
