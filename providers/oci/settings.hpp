#pragma once

#include "core/config.hpp"
#include "core/error.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cloudbrain::providers::oci {

// What an instance_type launches: a shape and, for a Flex shape, its OCPUs and memory.
struct shape_choice {
  std::string shape;
  std::optional<double> ocpus;      // Flex shapes only (required there)
  std::optional<double> memory_gb;  // Flex shapes only; absent: OCI's default for the OCPUs

  [[nodiscard]] bool flex() const { return shape.ends_with(".Flex"); }
  // "VM.Standard.E4.Flex (1 OCPU, 8 GB)", or the bare shape: what the reservation shows.
  [[nodiscard]] std::string describe() const;
};

// The API signing key's identity: the keyId of every request is "tenancy/user/fingerprint".
struct api_key_identity {
  std::string tenancy;
  std::string user;
  std::string fingerprint;  // lowercase hex pairs, "12:34:...:ef"
  std::string key_file;     // PEM private key; read on the blocking pool when first needed
  std::string pass_phrase;  // for an encrypted key; never logged

  [[nodiscard]] std::string key_id() const { return tenancy + "/" + user + "/" + fingerprint; }
};

// A [provider.NAME] section of type oci, checked and with its defaults filled in.
struct oci_settings {
  std::string name;                // the provider's name, for messages
  std::vector<std::string> zones;  // availability domains, in fallback order
  std::string region;
  std::string endpoint;  // "https://iaas.<region>.oraclecloud.com" unless given; no trailing '/'
  std::string compartment;
  api_key_identity identity;
  std::string config_file;  // where `identity` came from, if from a ~/.oci/config file
  std::string profile;
  std::string subnet;
  shape_choice standard{"VM.Standard.E4.Flex", 1.0, 8.0};
  shape_choice premium{"VM.Standard.E4.Flex", 4.0, 32.0};
  std::string ssh_user = "opc";
  bool assign_public_ip = true;
  unsigned boot_volume_size_gb = 0;  // 0: the image's own size
  std::string ca_file;

  // Any unknown key or bad value is errc::bad_config naming it. A `config-file` is read here
  // (this runs at start and on reload, never on the event loop); the key file is not.
  [[nodiscard]] static result<oci_settings> from_section(const provider_section& section);

  // The shape for an instance_type (standard | premium); anything else is cloud_permanent.
  [[nodiscard]] result<const shape_choice*> shape_for(std::string_view instance_type) const;
};

// One profile of an OCI CLI/SDK configuration file (~/.oci/config): INI sections, keys of the
// named profile falling back to [DEFAULT]'s, '#' comments.
struct oci_config_profile {
  std::string tenancy;
  std::string user;
  std::string fingerprint;
  std::string key_file;
  std::string region;
  std::string pass_phrase;
};

// Sans-io. Errors (bad_config) name the profile and what is missing or malformed, never a value
// that could be a secret. `home` replaces a leading "~/" of key_file.
[[nodiscard]] result<oci_config_profile> parse_oci_config(std::string_view text,
                                                          std::string_view profile,
                                                          std::string_view home);

// "~/x" → "<home>/x"; anything else unchanged.
[[nodiscard]] std::string expand_home(std::string_view path, std::string_view home);

// An OCID of the given resource type: "ocid1.<type>.<realm>.[region].<unique>".
[[nodiscard]] bool valid_ocid(std::string_view s, std::string_view type);

}  // namespace cloudbrain::providers::oci
