#include "providers/oci/settings.hpp"

#include "core/file.hpp"

#include <boost/url/parse.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <map>
#include <optional>

namespace cloudbrain::providers::oci {
namespace {

constexpr std::size_t max_config_file = 256 * 1024;

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

// us-ashburn-1, eu-frankfurt-1, ap-mumbai-1, ...
bool valid_region(std::string_view s) {
  return !s.empty() && s.size() <= 64 && is_lower_alnum(s.front()) && is_lower_alnum(s.back()) &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
}

// "Uocm:US-ASHBURN-AD-1": the tenancy's prefix, a colon, the name.
bool valid_availability_domain(std::string_view s) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == s.size() || s.size() > 128) {
    return false;
  }
  const auto prefix = s.substr(0, colon);
  const auto name = s.substr(colon + 1);
  return std::all_of(prefix.begin(), prefix.end(), is_alnum) &&
         std::all_of(name.begin(), name.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// VM.Standard.E4.Flex, BM.Standard3.64, VM.Standard.A1.Flex, ...
bool valid_shape(std::string_view s) {
  return !s.empty() && s.size() <= 64 && is_alnum(s.front()) && s.back() != '.' &&
         s.find('.') != std::string_view::npos &&
         std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '.'; });
}

// 16 hex pairs separated by ':', as OCI shows an API key's fingerprint; lowered.
std::optional<std::string> fingerprint_of(std::string_view s) {
  if (s.size() != 47) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (i % 3 == 2) {
      if (c != ':') return std::nullopt;
      out += c;
      continue;
    }
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return std::nullopt;
    out += static_cast<char>(c >= 'A' && c <= 'F' ? c - 'A' + 'a' : c);
  }
  return out;
}

bool valid_ssh_user(std::string_view s) {
  return !s.empty() && s.size() <= 32 &&
         ((s.front() >= 'a' && s.front() <= 'z') || s.front() == '_') &&
         std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.';
         });
}

bool valid_http_url(std::string_view s) {
  auto u = boost::urls::parse_absolute_uri(s);
  return u && (u->scheme() == "http" || u->scheme() == "https") && !u->encoded_host().empty() &&
         !u->has_query() && !u->has_fragment();
}

std::optional<bool> parse_bool(std::string_view v) {
  if (v == "true" || v == "yes" || v == "on" || v == "1") return true;
  if (v == "false" || v == "no" || v == "off" || v == "0") return false;
  return std::nullopt;
}

// A positive decimal up to `max` ("1", "0.5", "16").
std::optional<double> parse_positive(std::string_view v, double max) {
  double d = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), d);
  if (v.empty() || ec != std::errc{} || end != v.data() + v.size() || !(d > 0) || d > max) {
    return std::nullopt;
  }
  return d;
}

std::string number_text(double d) {
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(d);
}

std::string trim(std::string_view s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const auto e = s.find_last_not_of(" \t\r");
  return std::string(s.substr(b, e - b + 1));
}

std::string home_dir() {
  const char* h = std::getenv("HOME");
  return h ? h : "";
}

// The raw values of one instance type's keys, resolved once every key has been read.
struct shape_keys {
  std::optional<std::string> shape;
  std::optional<double> ocpus;
  std::optional<double> memory_gb;
};

result<shape_choice> resolve_shape(const std::string& where, const std::string& type,
                                   const shape_keys& k, const shape_choice& dflt) {
  shape_choice c = dflt;
  if (k.shape) {
    c.shape = *k.shape;
    c.ocpus.reset();
    c.memory_gb.reset();
  }
  if (k.ocpus) c.ocpus = k.ocpus;
  if (k.memory_gb) c.memory_gb = k.memory_gb;
  if (!c.flex()) {
    if (c.ocpus || c.memory_gb) {
      return fail(errc::bad_config, where + "'" + type + "-ocpus' and '" + type +
                                        "-memory-gb' apply only to Flex shapes, and '" + c.shape +
                                        "' is not one");
    }
    return c;
  }
  if (!c.ocpus) {
    return fail(errc::bad_config, where + "'" + type + "-shape' " + c.shape +
                                      " is a Flex shape: '" + type + "-ocpus' is required");
  }
  return c;
}

}  // namespace

std::string shape_choice::describe() const {
  if (!flex() || !ocpus) return shape;
  std::string d = shape + " (" + number_text(*ocpus) + (*ocpus == 1.0 ? " OCPU" : " OCPUs");
  if (memory_gb) d += ", " + number_text(*memory_gb) + " GB";
  return d + ")";
}

bool valid_ocid(std::string_view s, std::string_view type) {
  // ocid1.<type>.<realm>.[region][.future use].<unique>
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    const auto dot = s.find('.', start);
    parts.push_back(s.substr(start, dot == std::string_view::npos ? s.npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (s.size() > 255 || parts.size() < 5 || parts[0] != "ocid1" || parts[1] != type) return false;
  const auto lower_alnum_or_dash = [](std::string_view p) {
    return std::all_of(p.begin(), p.end(), [](char c) { return is_lower_alnum(c) || c == '-'; });
  };
  for (std::size_t i = 2; i < parts.size(); ++i) {
    if (!lower_alnum_or_dash(parts[i])) return false;
  }
  return !parts[2].empty() && !parts.back().empty();
}

std::string expand_home(std::string_view path, std::string_view home) {
  if (path.starts_with("~/") && !home.empty()) {
    std::string out(home);
    out.append(path.substr(1));
    return out;
  }
  return std::string(path);
}

result<oci_config_profile> parse_oci_config(std::string_view text, std::string_view profile,
                                            std::string_view home) {
  std::map<std::string, std::map<std::string, std::string>, std::less<>> sections;
  std::string current;
  bool in_section = false;
  unsigned line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#' || line.front() == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') {
        return fail(errc::bad_config, "line " + std::to_string(line_no) +
                                          " starts a profile but does not end with ']'");
      }
      current = trim(std::string_view(line).substr(1, line.size() - 2));
      if (current.empty()) {
        return fail(errc::bad_config,
                    "line " + std::to_string(line_no) + " names an empty profile");
      }
      sections[current];
      in_section = true;
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos || !in_section) {
      return fail(errc::bad_config,
                  "line " + std::to_string(line_no) +
                      (in_section ? " is not KEY=VALUE" : " comes before any [PROFILE]"));
    }
    sections[current][trim(std::string_view(line).substr(0, eq))] =
        trim(std::string_view(line).substr(eq + 1));
  }

  const auto named = sections.find(profile);
  if (named == sections.end()) {
    std::string known;
    for (const auto& [name, _] : sections) known += (known.empty() ? "" : ", ") + name;
    return fail(errc::bad_config, "has no profile [" + std::string(profile) + "]" +
                                      (known.empty() ? "" : " (it has: " + known + ")"));
  }
  const auto dflt = sections.find("DEFAULT");
  auto value = [&](const char* key) -> std::string {
    if (auto it = named->second.find(key); it != named->second.end()) return it->second;
    if (dflt != sections.end()) {
      if (auto it = dflt->second.find(key); it != dflt->second.end()) return it->second;
    }
    return {};
  };

  oci_config_profile p;
  p.tenancy = value("tenancy");
  p.user = value("user");
  p.fingerprint = value("fingerprint");
  p.key_file = expand_home(value("key_file"), home);
  p.region = value("region");
  p.pass_phrase = value("pass_phrase");
  std::string missing;
  for (const auto& [key, v] : {std::pair{"tenancy", &p.tenancy},
                               {"user", &p.user},
                               {"fingerprint", &p.fingerprint},
                               {"key_file", &p.key_file}}) {
    if (v->empty()) missing += (missing.empty() ? "" : ", ") + std::string(key);
  }
  if (!missing.empty()) {
    return fail(errc::bad_config,
                "profile [" + std::string(profile) + "] has no " + missing +
                    (value("security_token_file").empty()
                         ? ""
                         : " (security-token profiles are not supported: use an API key)"));
  }
  return p;
}

result<oci_settings> oci_settings::from_section(const provider_section& section) {
  oci_settings o;
  o.name = section.name;
  const std::string where = "[provider." + section.name + "] ";
  auto bad = [&](const std::string& key, const std::string& value, const std::string& why) {
    return fail(errc::bad_config, where + "'" + key + "' " + why + ", not '" + value + "'");
  };

  std::optional<std::string> tenancy, user, fingerprint, key_file, pass_phrase, config_file,
      profile;
  shape_keys standard_keys, premium_keys;
  for (const auto& [key, value] : section.settings) {
    if (key == "region") {
      if (!valid_region(value)) return bad(key, value, "must be a region like us-ashburn-1");
      o.region = value;
    } else if (key == "compartment") {
      // The root compartment is the tenancy itself.
      if (!valid_ocid(value, "compartment") && !valid_ocid(value, "tenancy")) {
        return bad(key, value, "must be a compartment OCID (ocid1.compartment.oc1..)");
      }
      o.compartment = value;
    } else if (key == "tenancy") {
      if (!valid_ocid(value, "tenancy"))
        return bad(key, value, "must be a tenancy OCID (ocid1.tenancy.oc1..)");
      tenancy = value;
    } else if (key == "user") {
      if (!valid_ocid(value, "user"))
        return bad(key, value, "must be a user OCID (ocid1.user.oc1..)");
      user = value;
    } else if (key == "fingerprint") {
      fingerprint = fingerprint_of(value);
      if (!fingerprint) {
        return bad(key, value, "must be the API key's fingerprint (16 hex pairs joined by ':')");
      }
    } else if (key == "key-file") {
      if (value.empty()) return bad(key, value, "must name a PEM file");
      key_file = expand_home(value, home_dir());
    } else if (key == "pass-phrase") {
      pass_phrase = value;  // never echoed in a message
    } else if (key == "config-file") {
      if (value.empty()) return bad(key, value, "must name a file");
      config_file = expand_home(value, home_dir());
    } else if (key == "profile") {
      if (value.empty() || value.find_first_of("[]\n") != std::string::npos) {
        return bad(key, value, "must be a profile name");
      }
      profile = value;
    } else if (key == "subnet") {
      if (!valid_ocid(value, "subnet"))
        return bad(key, value, "must be a subnet OCID (ocid1.subnet.oc1..)");
      o.subnet = value;
    } else if (key == "standard-shape" || key == "premium-shape") {
      if (!valid_shape(value)) return bad(key, value, "must be a shape like VM.Standard.E4.Flex");
      (key == "standard-shape" ? standard_keys : premium_keys).shape = value;
    } else if (key == "standard-ocpus" || key == "premium-ocpus") {
      const auto n = parse_positive(value, 512);
      if (!n) return bad(key, value, "must be a number of OCPUs above 0, at most 512");
      (key == "standard-ocpus" ? standard_keys : premium_keys).ocpus = n;
    } else if (key == "standard-memory-gb" || key == "premium-memory-gb") {
      const auto n = parse_positive(value, 8192);
      if (!n) return bad(key, value, "must be a number of GB above 0, at most 8192");
      (key == "standard-memory-gb" ? standard_keys : premium_keys).memory_gb = n;
    } else if (key == "ssh-user") {
      if (!valid_ssh_user(value)) return bad(key, value, "must be a Linux user name");
      o.ssh_user = value;
    } else if (key == "assign-public-ip") {
      const auto b = parse_bool(value);
      if (!b) return bad(key, value, "must be true or false");
      o.assign_public_ip = *b;
    } else if (key == "boot-volume-size-gb") {
      unsigned n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < 50 || n > 32768) {
        return bad(key, value, "must be a whole number of GB from 50 to 32768");
      }
      o.boot_volume_size_gb = n;
    } else if (key == "ca-file") {
      if (value.empty()) return bad(key, value, "must name a PEM file");
      o.ca_file = value;
    } else {
      return fail(errc::bad_config,
                  where + "unknown key '" + key +
                      "' for type oci (known: zones, endpoint, rate-limit, max-in-flight, region, "
                      "compartment, tenancy, user, fingerprint, key-file, pass-phrase, "
                      "config-file, profile, subnet, standard-shape, standard-ocpus, "
                      "standard-memory-gb, premium-shape, premium-ocpus, premium-memory-gb, "
                      "ssh-user, assign-public-ip, boot-volume-size-gb, ca-file)");
    }
  }

  // The API key: the four fields, or a profile of an OCI config file; never a mix.
  const bool any_field = tenancy || user || fingerprint || key_file;
  if (config_file) {
    if (any_field) {
      return fail(errc::bad_config,
                  where +
                      "give either 'config-file' (+ 'profile') or 'tenancy', 'user', "
                      "'fingerprint' and 'key-file', not both");
    }
    o.config_file = *config_file;
    o.profile = profile.value_or("DEFAULT");
    auto text = read_whole_file(o.config_file, max_config_file);
    if (!text) {
      return fail(errc::bad_config, where + "cannot read the OCI config file '" + o.config_file +
                                        "': " + text.error().detail);
    }
    auto p = parse_oci_config(*text, o.profile, home_dir());
    if (!p) {
      return fail(errc::bad_config,
                  where + "the OCI config file '" + o.config_file + "' " + p.error().detail);
    }
    const std::string in_file = " in profile [" + o.profile + "] of '" + o.config_file + "'";
    if (!valid_ocid(p->tenancy, "tenancy"))
      return fail(errc::bad_config, where + "'tenancy'" + in_file + " is not a tenancy OCID");
    if (!valid_ocid(p->user, "user"))
      return fail(errc::bad_config, where + "'user'" + in_file + " is not a user OCID");
    auto fp = fingerprint_of(p->fingerprint);
    if (!fp) {
      return fail(errc::bad_config,
                  where + "'fingerprint'" + in_file + " is not 16 hex pairs joined by ':'");
    }
    if (!p->region.empty() && o.region.empty()) {
      if (!valid_region(p->region))
        return fail(errc::bad_config, where + "'region'" + in_file + " is not a region name");
      o.region = p->region;
    }
    o.identity = {p->tenancy, p->user, *fp, p->key_file, p->pass_phrase};
  } else {
    if (profile) {
      return fail(errc::bad_config, where +
                                        "'profile' needs 'config-file' (the OCI config file "
                                        "it is a profile of)");
    }
    std::string missing;
    for (const auto& [key, v] : {std::pair{"tenancy", &tenancy},
                                 {"user", &user},
                                 {"fingerprint", &fingerprint},
                                 {"key-file", &key_file}}) {
      if (!*v) missing += (missing.empty() ? "'" : ", '") + std::string(key) + "'";
    }
    if (!missing.empty()) {
      return fail(errc::bad_config,
                  where + "type oci needs " + missing +
                      (any_field ? ""
                                 : " (the API key's tenancy, user, fingerprint and key-file, or "
                                   "'config-file' naming an OCI config file and its 'profile')"));
    }
    o.identity = {*tenancy, *user, *fingerprint, *key_file, pass_phrase.value_or("")};
  }
  if (pass_phrase && config_file) o.identity.pass_phrase = *pass_phrase;

  if (o.compartment.empty())
    return fail(errc::bad_config, where + "'compartment' is required for type oci");
  if (o.subnet.empty()) return fail(errc::bad_config, where + "'subnet' is required for type oci");
  if (section.zones.empty()) {
    return fail(errc::bad_config,
                where + "'zones' (availability domains) is required for type oci");
  }
  for (const auto& z : section.zones) {
    if (!valid_availability_domain(z)) {
      return bad("zones", z, "must list availability domains like Uocm:US-ASHBURN-AD-1");
    }
  }
  o.zones = section.zones;

  auto standard = resolve_shape(where, "standard", standard_keys, o.standard);
  if (!standard) return standard.error();
  o.standard = std::move(*standard);
  auto premium = resolve_shape(where, "premium", premium_keys, o.premium);
  if (!premium) return premium.error();
  o.premium = std::move(*premium);

  if (!section.endpoint.empty()) {
    std::string e = section.endpoint;
    if (!valid_http_url(e)) return bad("endpoint", e, "must be an http(s) URL");
    while (!e.empty() && e.back() == '/') e.pop_back();
    // Also accept the form with the API version, as the SDKs print it.
    constexpr std::string_view version = "/20160918";
    if (e.ends_with(version)) e.erase(e.size() - version.size());
    o.endpoint = e;
  } else if (!o.region.empty()) {
    o.endpoint = "https://iaas." + o.region + ".oraclecloud.com";
  } else {
    return fail(errc::bad_config,
                where +
                    "type oci needs 'region' (or an 'endpoint', or a region in its "
                    "config-file profile)");
  }
  return o;
}

result<const shape_choice*> oci_settings::shape_for(std::string_view instance_type) const {
  if (instance_type.empty() || instance_type == "standard") return &standard;
  if (instance_type == "premium") return &premium;
  return fail(errc::cloud_permanent,
              "unknown instance type '" + std::string(instance_type) + "' (standard or premium)");
}

}  // namespace cloudbrain::providers::oci
