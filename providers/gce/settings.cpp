#include "providers/gce/settings.hpp"

#include "providers/section_values.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <optional>

namespace cloudbrain::providers::gce {
namespace {

bool is_name_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

// Google's resource names: lowercase letters, digits and '-', starting with a letter.
bool valid_resource_name(std::string_view s) {
  return !s.empty() && s.size() <= 63 && s.front() >= 'a' && s.front() <= 'z' &&
         std::all_of(s.begin(), s.end(), is_name_char);
}

// Project ids, including domain-scoped ones ("example.com:my-project").
bool valid_project(std::string_view s) {
  return !s.empty() && s.size() <= 100 && std::all_of(s.begin(), s.end(), [](char c) {
    return is_name_char(c) || c == '.' || c == ':';
  });
}

bool valid_ssh_user(std::string_view s) {
  return !s.empty() && s.size() <= 32 &&
         ((s.front() >= 'a' && s.front() <= 'z') || s.front() == '_') &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return is_name_char(c) || c == '_' || c == '.'; });
}

// A network or subnetwork: a bare name, a relative path or a full URL, without spaces.
bool valid_path(std::string_view s) {
  return !s.empty() && std::none_of(s.begin(), s.end(), [](char c) {
    return c <= ' ' || c == '"' || c == '?' || c == '#' || c == 0x7f;
  });
}

// An absolute http:// or https:// URL with a host.
bool valid_http_url(std::string_view s) {
  auto u = boost::urls::parse_absolute_uri(s);
  return u && (u->scheme() == "http" || u->scheme() == "https") && !u->encoded_host().empty();
}

}  // namespace

result<gce_settings> gce_settings::from_section(const provider_section& section) {
  gce_settings g;
  g.name = section.name;
  const std::string where = "[provider." + section.name + "] ";
  auto bad = [&](const std::string& key, const std::string& value, const std::string& why) {
    return fail(errc::bad_config, where + "'" + key + "' " + why + ", not '" + value + "'");
  };

  for (const auto& [key, value] : section.settings) {
    if (key == "project") {
      if (!valid_project(value)) return bad(key, value, "must be a project id");
      g.project = value;
    } else if (key == "credentials") {
      g.credentials = value;
    } else if (key == "image-project") {
      if (!valid_project(value)) return bad(key, value, "must be a project id");
      g.image_project = value;
    } else if (key == "standard-machine-type" || key == "premium-machine-type") {
      if (!valid_resource_name(value)) return bad(key, value, "must be a machine type name");
      (key == "standard-machine-type" ? g.standard_machine_type : g.premium_machine_type) = value;
    } else if (key == "ssh-user") {
      if (!valid_ssh_user(value)) return bad(key, value, "must be a Linux user name");
      g.ssh_user = value;
    } else if (key == "network" || key == "subnetwork") {
      if (!valid_path(value)) return bad(key, value, "must be a name, path or URL");
      (key == "network" ? g.network : g.subnetwork) = value;
    } else if (key == "disk-size-gb") {
      unsigned n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 10 || n > 65536) {
        return bad(key, value, "must be a whole number of GB from 10 to 65536");
      }
      g.disk_size_gb = n;
    } else if (key == "disk-type") {
      if (!valid_resource_name(value)) return bad(key, value, "must be a disk type name");
      g.disk_type = value;
    } else if (key == "external-ip" || key == "preemptible" || key == "spot") {
      const auto b = parse_switch(value);
      if (!b) return bad(key, value, "must be true or false");
      (key == "external-ip" ? g.external_ip : key == "spot" ? g.spot : g.preemptible) = *b;
    } else if (key == "ca-file") {
      g.ca_file = value;
    } else if (key == "metadata-host") {
      if (!valid_path(value) || value.find('/') != std::string::npos) {
        return bad(key, value, "must be a host name or host:port");
      }
      g.metadata_host = value;
    } else if (key == "token-uri-override") {
      if (!valid_http_url(value)) return bad(key, value, "must be an http(s) URL");
      g.token_uri_override = value;
    } else {
      return fail(errc::bad_config,
                  where + "unknown key '" + key +
                      "' for type gce (known: zones, endpoint, rate-limit, max-in-flight, "
                      "project, credentials, image-project, standard-machine-type, "
                      "premium-machine-type, ssh-user, network, subnetwork, disk-size-gb, "
                      "disk-type, external-ip, preemptible, spot, ca-file, metadata-host, "
                      "token-uri-override)");
    }
  }

  if (g.project.empty())
    return fail(errc::bad_config, where + "'project' is required for type gce");
  if (g.image_project.empty()) g.image_project = g.project;
  if (section.zones.empty())
    return fail(errc::bad_config, where + "'zones' is required for type gce");
  for (const auto& z : section.zones) {
    // us-central1-a: a region and a letter.
    if (!valid_resource_name(z) || z.rfind('-') == std::string::npos || z.back() == '-') {
      return bad("zones", z, "must list zone names like us-central1-a");
    }
  }
  g.zones = section.zones;
  if (g.spot && g.preemptible) {
    return fail(errc::bad_config, where + "'spot' and 'preemptible' exclude each other");
  }
  if (!section.endpoint.empty()) {
    std::string e = section.endpoint;
    if (!valid_http_url(e)) return bad("endpoint", e, "must be an http(s) URL");
    while (!e.empty() && e.back() == '/') e.pop_back();
    // Also accept the form gcloud's api_endpoint_overrides uses: ".../compute/v1/".
    constexpr std::string_view suffix = "/compute/v1";
    if (e.size() > suffix.size() &&
        e.compare(e.size() - suffix.size(), suffix.size(), suffix) == 0) {
      e.erase(e.size() - suffix.size());
    }
    g.endpoint = e;
  }
  return g;
}

result<std::string> gce_settings::machine_type_for(std::string_view instance_type) const {
  if (instance_type.empty() || instance_type == "standard") return standard_machine_type;
  if (instance_type == "premium") return premium_machine_type;
  return fail(errc::cloud_permanent,
              "unknown instance type '" + std::string(instance_type) + "' (standard or premium)");
}

}  // namespace cloudbrain::providers::gce
