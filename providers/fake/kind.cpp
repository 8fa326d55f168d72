#include "providers/fake/fake_driver.hpp"
#include "providers/registry.hpp"

namespace cloudbrain::providers::fake {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context&) {
  auto settings = fake_settings::from_section(section);
  if (!settings) return settings.error();
  return std::unique_ptr<driver>(std::make_unique<fake_driver>(std::move(*settings)));
}

}  // namespace

extern const cloud_kind kind{
    .type = "fake",
    .summary = "a simulated cloud in memory, for trying the service out and for tests",
    .keys = R"(    boot-delay (50ms), delete-delay (10ms), api-latency (0ms)
        How long a VM takes to boot and to go, and every call to answer.
    failure-rate (0.0)
        The share of creates that fail with a transient error.
    capacity-per-zone (1000), zone-capacity (ZONE:N ...)
        How many VMs (and reserved places) a zone holds; zone-capacity overrides it per zone.
    seed (0: random)
        Makes the failures repeatable.
)",
    .environment = "",
    .make = &make,
};

}  // namespace cloudbrain::providers::fake
