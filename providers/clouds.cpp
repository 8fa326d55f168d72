// The clouds built into cloudbrain: one line each. A cloud's folder defines
// `const cloud_kind cloudbrain::providers::<cloud>::kind` (see providers/registry.hpp).
#define CLOUDBRAIN_CLOUDS(X) \
  X(fake)                    \
  X(gce)                     \
  X(aws)                     \
  X(azure)                   \
  X(oci)                     \
  X(external)

#include "providers/registry.hpp"

#include <array>

namespace cloudbrain::providers {

#define CLOUDBRAIN_DECLARE_KIND(cloud) \
  namespace cloud {                    \
  extern const cloud_kind kind;        \
  }
CLOUDBRAIN_CLOUDS(CLOUDBRAIN_DECLARE_KIND)
#undef CLOUDBRAIN_DECLARE_KIND

namespace {
#define CLOUDBRAIN_KIND_ENTRY(cloud) &cloud::kind,
constexpr std::array all_kinds{CLOUDBRAIN_CLOUDS(CLOUDBRAIN_KIND_ENTRY)};
#undef CLOUDBRAIN_KIND_ENTRY
}  // namespace

std::span<const cloud_kind* const> cloud_kinds() { return all_kinds; }

const cloud_kind* find_cloud_kind(std::string_view type) {
  for (const auto* k : all_kinds) {
    if (k->type == type) return k;
  }
  return nullptr;
}

std::string cloud_type_names() {
  std::string out;
  for (const auto* k : all_kinds) {
    if (!out.empty()) out += ", ";
    out += k->type;
  }
  return out;
}

}  // namespace cloudbrain::providers
