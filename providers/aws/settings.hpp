#pragma once

#include "core/config.hpp"
#include "core/error.hpp"

#include <map>
#include <string>
#include <vector>

namespace cloudbrain::providers::aws {

// IMDSv2, where an EC2 instance finds its role's credentials.
inline constexpr const char* default_metadata_endpoint = "http://169.254.169.254";

// A [provider.NAME] section of type aws, checked and with its defaults filled in.
struct aws_settings {
  std::string name;  // the provider's name, for messages
  std::string region;
  std::vector<std::string> zones;
  std::string endpoint;     // https://ec2.<region>.amazonaws.com unless set; no trailing '/'
  std::string credentials;  // shared credentials file; empty: environment, then IMDSv2
  std::string profile = "default";  // the profile in that file
  std::string standard_instance_type = "m5.large";
  std::string premium_instance_type = "m5.2xlarge";
  std::map<std::string, std::string> subnets;  // zone → subnet id; a zone without one: Placement
  std::vector<std::string> security_groups;
  std::vector<std::string> image_owners{"self"};  // who may own an AMI looked up by name
  std::string ssh_user = "cloudbrain";
  bool public_ip = true;  // the instance's address is its public one (else its private one)
  std::string ca_file;
  std::string metadata_endpoint = default_metadata_endpoint;

  // Any unknown key or bad value is errc::bad_config naming it.
  [[nodiscard]] static result<aws_settings> from_section(const provider_section& section);

  // The instance type for an instance_type (standard | premium); anything else is an error.
  [[nodiscard]] result<std::string> instance_type_for(std::string_view instance_type) const;
};

// The EC2 endpoint of a region: https://ec2.<region>.amazonaws.com (.com.cn in China).
[[nodiscard]] std::string default_endpoint_for(std::string_view region);

// eu-west-1, us-gov-west-1, cn-north-1, ap-southeast-4, ...
[[nodiscard]] bool valid_region(std::string_view s);
// An AMI id: ami- and 8 or 17 hex digits.
[[nodiscard]] bool is_ami_id(std::string_view s);

}  // namespace cloudbrain::providers::aws
