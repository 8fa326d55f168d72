#pragma once

#include "providers/driver.hpp"

#include <span>
#include <string_view>

namespace cloudbrain::providers {

// What a cloud's folder (providers/<cloud>/) gives the rest of the service: the `type` its
// sections carry, a factory that checks the section's own keys and builds the driver, and its
// part of the manual. Nothing outside providers/ names a cloud; a new cloud is a folder plus
// one line in providers/clouds.cpp.
struct cloud_kind {
  std::string_view type;
  // One line: what the type is, for the manual's list of provider types.
  std::string_view summary;
  // The section's own keys, as manual text (indented by four, wrapped at 100 columns); empty
  // when the type has none beyond the common ones.
  std::string_view keys;
  // Environment variables the type reads, as manual entries (same layout); may be empty.
  std::string_view environment;
  result<std::unique_ptr<driver>> (*make)(const provider_section& section,
                                          const driver_context& ctx) = nullptr;
};

// Every cloud built into this binary, in the order of providers/clouds.cpp.
[[nodiscard]] std::span<const cloud_kind* const> cloud_kinds();
[[nodiscard]] const cloud_kind* find_cloud_kind(std::string_view type);
// "fake, gce, ..." for messages.
[[nodiscard]] std::string cloud_type_names();

}  // namespace cloudbrain::providers
