// Every request body's JSON decoding and validation: POST /instances, POST /reservations and
// POST /reservation-sets against two configured providers. The first byte picks the body's kind.
#include "actors/requests.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string_view>

namespace {

const cloudbrain::section_lookup& sections() {
  static const auto all = [] {
    std::vector<cloudbrain::provider_section> s(2);
    s[0].name = "gce";
    s[0].type = "fake";
    s[0].zones = {"zone-a", "zone-b"};
    s[1].name = "aws-eu";
    s[1].type = "fake";
    s[1].zones = {"eu-west-1a"};
    s[1].max_reserved_instances = 10;
    return s;
  }();
  static const cloudbrain::section_lookup lookup =
      [](std::string_view name) -> const cloudbrain::provider_section* {
    for (const auto& s : all) {
      if (s.name == name) return &s;
    }
    return nullptr;
  };
  return lookup;
}

}  // namespace

CLOUDBRAIN_FUZZ_TARGET(request_bodies) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto now = cloudbrain::system_clock::now();
  switch (data[0] % 3) {
    case 0: {
      auto [req, v] = cloudbrain::parse_instance_request(body, sections());
      if (v.ok() && req.provider.empty()) __builtin_trap();  // accepted without a provider
      break;
    }
    case 1: {
      auto parsed = cloudbrain::parse_reservation_request(body, sections(), now);
      if (parsed.v.ok() && parsed.req.count <= 0) __builtin_trap();  // accepted without a count
      break;
    }
    default: {
      auto parsed = cloudbrain::parse_set_request(body, sections(), now);
      if (parsed.v.ok() && (parsed.req.placements.empty() ||
                            parsed.req.ends_at == cloudbrain::system_clock::time_point{})) {
        __builtin_trap();  // accepted without a placement or an end
      }
      break;
    }
  }
  return 0;
}
