#include "providers/aws/settings.hpp"

#include "providers/section_values.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <optional>
#include <sstream>

namespace cloudbrain::providers::aws {
namespace {

bool lower_or_digit(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

// "<prefix>" followed by 1 to 17 lowercase hex digits: subnet-0aaa, sg-0123456789abcdef0.
bool valid_resource_id(std::string_view s, std::string_view prefix) {
  if (!s.starts_with(prefix)) return false;
  const auto digits = s.substr(prefix.size());
  return !digits.empty() && digits.size() <= 17 &&
         std::all_of(digits.begin(), digits.end(), is_hex);
}

// m5.large, c7gn.16xlarge, u-6tb1.metal, mac2-m2pro.metal.
bool valid_instance_type(std::string_view s) {
  const auto dot = s.find('.');
  if (s.empty() || s.size() > 64 || dot == std::string_view::npos || dot == 0 ||
      dot + 1 == s.size() || s.front() < 'a' || s.front() > 'z') {
    return false;
  }
  const auto family = s.substr(0, dot);
  const auto size = s.substr(dot + 1);
  return std::all_of(family.begin(), family.end(),
                     [](char c) { return lower_or_digit(c) || c == '-'; }) &&
         std::all_of(size.begin(), size.end(), lower_or_digit);
}

// A zone of `region`: eu-west-1a, or a Local Zone such as us-west-2-lax-1a.
bool valid_zone(std::string_view zone, std::string_view region) {
  if (!zone.starts_with(region) || zone.size() == region.size()) return false;
  const auto rest = zone.substr(region.size());
  return std::all_of(rest.begin(), rest.end(),
                     [](char c) { return lower_or_digit(c) || c == '-'; }) &&
         rest.back() >= 'a' && rest.back() <= 'z' && (rest.front() == '-' || rest.size() == 1);
}

bool valid_owner(std::string_view s) {
  if (s == "self" || s == "amazon" || s == "aws-marketplace" || s == "aws-backup-vault")
    return true;
  return s.size() == 12 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool valid_ssh_user(std::string_view s) {
  return !s.empty() && s.size() <= 32 &&
         ((s.front() >= 'a' && s.front() <= 'z') || s.front() == '_') &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return lower_or_digit(c) || c == '-' || c == '_' || c == '.'; });
}

bool valid_profile(std::string_view s) {
  return !s.empty() && s.size() <= 128 && std::none_of(s.begin(), s.end(), [](char c) {
    return c <= ' ' || c == '[' || c == ']' || c == 0x7f;
  });
}

// An absolute http:// or https:// URL with a host and nothing after it but an optional '/'.
std::optional<std::string> base_url(std::string_view s) {
  auto u = boost::urls::parse_absolute_uri(s);
  if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->encoded_host().empty() ||
      (!u->encoded_path().empty() && u->encoded_path() != "/") || u->has_query() ||
      u->has_fragment() || u->has_userinfo()) {
    return std::nullopt;
  }
  std::string out(s);
  while (!out.empty() && out.back() == '/') out.pop_back();
  return out;
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  std::istringstream in{std::string(s)};
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

}  // namespace

bool valid_region(std::string_view s) {
  // Two letters, one or more words, a number: eu-west-1, us-gov-west-1, ap-southeast-4.
  if (s.size() < 6 || s.size() > 32) return false;
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const auto dash = s.find('-', start);
    parts.push_back(s.substr(start, dash == std::string_view::npos ? dash : dash - start));
    if (dash == std::string_view::npos) break;
    start = dash + 1;
  }
  if (parts.size() < 3 || parts.front().size() != 2) return false;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    const auto p = parts[i];
    if (p.empty() || !std::all_of(p.begin(), p.end(), [](char c) { return c >= 'a' && c <= 'z'; }))
      return false;
  }
  const auto n = parts.back();
  return !n.empty() && std::all_of(n.begin(), n.end(), [](char c) { return c >= '0' && c <= '9'; });
}

bool is_ami_id(std::string_view s) {
  const auto digits = s.substr(std::min<std::size_t>(4, s.size()));
  return s.starts_with("ami-") && digits.size() >= 8 && digits.size() <= 17 &&
         std::all_of(digits.begin(), digits.end(), is_hex);
}

std::string default_endpoint_for(std::string_view region) {
  std::string e = "https://ec2.";
  e.append(region).append(".amazonaws.com");
  if (region.starts_with("cn-")) e += ".cn";
  return e;
}

result<aws_settings> aws_settings::from_section(const provider_section& section) {
  aws_settings a;
  a.name = section.name;
  const std::string where = "[provider." + section.name + "] ";
  auto bad = [&](const std::string& key, const std::string& value, const std::string& why) {
    return fail(errc::bad_config, where + "'" + key + "' " + why + ", not '" + value + "'");
  };

  std::string subnets_value;
  bool profile_set = false;
  for (const auto& [key, value] : section.settings) {
    if (key == "region") {
      if (!valid_region(value)) return bad(key, value, "must be a region such as eu-west-1");
      a.region = value;
    } else if (key == "credentials") {
      if (value.empty()) return bad(key, value, "must name a shared credentials file");
      a.credentials = value;
    } else if (key == "profile") {
      if (!valid_profile(value)) return bad(key, value, "must be a profile name");
      a.profile = value;
      profile_set = true;
    } else if (key == "standard-instance-type" || key == "premium-instance-type") {
      if (!valid_instance_type(value))
        return bad(key, value, "must be an EC2 instance type such as m5.large");
      (key == "standard-instance-type" ? a.standard_instance_type : a.premium_instance_type) =
          value;
    } else if (key == "subnets") {
      subnets_value = value;  // checked against the zones below
    } else if (key == "security-groups") {
      a.security_groups.clear();
      for (const auto& g : words(value)) {
        if (!valid_resource_id(g, "sg-"))
          return bad(key, g, "must list security group ids such as sg-0123456789abcdef0");
        if (std::find(a.security_groups.begin(), a.security_groups.end(), g) ==
            a.security_groups.end())
          a.security_groups.push_back(g);
      }
    } else if (key == "image-owners") {
      a.image_owners.clear();
      for (const auto& o : words(value)) {
        if (!valid_owner(o)) {
          return bad(key, o,
                     "must list self, amazon, aws-marketplace, aws-backup-vault or 12-digit "
                     "account ids");
        }
        a.image_owners.push_back(o);
      }
      if (a.image_owners.empty()) return bad(key, value, "must name at least one owner");
    } else if (key == "ssh-user") {
      if (!valid_ssh_user(value)) return bad(key, value, "must be a Linux user name");
      a.ssh_user = value;
    } else if (key == "public-ip") {
      const auto b = parse_switch(value);
      if (!b) return bad(key, value, "must be true or false");
      a.public_ip = *b;
    } else if (key == "ca-file") {
      a.ca_file = value;
    } else if (key == "metadata-endpoint") {
      auto url = base_url(value);
      if (!url) return bad(key, value, "must be an http(s) URL without a path");
      a.metadata_endpoint = *url;
    } else {
      return fail(errc::bad_config,
                  where + "unknown key '" + key +
                      "' for type aws (known: zones, endpoint, rate-limit, max-in-flight, "
                      "region, credentials, profile, standard-instance-type, "
                      "premium-instance-type, subnets, security-groups, image-owners, ssh-user, "
                      "public-ip, ca-file, metadata-endpoint)");
    }
  }

  if (a.region.empty()) return fail(errc::bad_config, where + "'region' is required for type aws");
  if (profile_set && a.credentials.empty()) {
    return fail(errc::bad_config,
                where + "'profile' names a profile of the 'credentials' file, which is not set");
  }
  if (section.zones.empty())
    return fail(errc::bad_config, where + "'zones' is required for type aws");
  for (const auto& z : section.zones) {
    if (!valid_zone(z, a.region)) {
      return bad(
          "zones", z,
          "must list availability zones of region " + a.region + " such as " + a.region + "a");
    }
  }
  a.zones = section.zones;

  for (const auto& pair : words(subnets_value)) {
    const auto eq = pair.find('=');
    if (eq == std::string::npos) return bad("subnets", pair, "must be ZONE=SUBNET pairs");
    const auto zone = pair.substr(0, eq);
    const auto subnet = pair.substr(eq + 1);
    if (std::find(a.zones.begin(), a.zones.end(), zone) == a.zones.end())
      return bad("subnets", pair, "must name a zone listed in 'zones'");
    if (!valid_resource_id(subnet, "subnet-"))
      return bad("subnets", pair, "must give a subnet id such as subnet-0123456789abcdef0");
    if (!a.subnets.emplace(zone, subnet).second)
      return bad("subnets", pair, "names zone " + zone + " twice");
  }

  a.endpoint = default_endpoint_for(a.region);
  if (!section.endpoint.empty()) {
    auto url = base_url(section.endpoint);
    if (!url) return bad("endpoint", section.endpoint, "must be an http(s) URL without a path");
    a.endpoint = *url;
  }
  return a;
}

result<std::string> aws_settings::instance_type_for(std::string_view instance_type) const {
  if (instance_type.empty() || instance_type == "standard") return standard_instance_type;
  if (instance_type == "premium") return premium_instance_type;
  return fail(errc::cloud_permanent,
              "unknown instance type '" + std::string(instance_type) + "' (standard or premium)");
}

}  // namespace cloudbrain::providers::aws
