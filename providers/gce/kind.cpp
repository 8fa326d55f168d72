#include "providers/gce/gce_driver.hpp"
#include "providers/registry.hpp"

#include <cstdlib>

namespace cloudbrain::providers::gce {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context& ctx) {
  auto settings = gce_settings::from_section(section);
  if (!settings) return settings.error();
  // Google's client libraries let GCE_METADATA_HOST move the metadata server; the section's own
  // metadata-host still wins.
  if (const char* host = std::getenv("GCE_METADATA_HOST");
      host && *host && !section.settings.contains("metadata-host")) {
    settings->metadata_host = host;
  }
  if (!ctx.blocking) return fail(errc::internal, "the gce driver needs a blocking pool");
  return std::unique_ptr<driver>(std::make_unique<gce_driver>(std::move(*settings), ctx));
}

}  // namespace

extern const cloud_kind kind{
    .type = "gce",
    .summary = "Google Compute Engine, on its v1 REST API",
    .keys = R"(    project (required), image-project (the project)
        Where VMs are made, and where `image` names are looked up.
    credentials (default: the metadata server)
        A service-account key file (JSON).
    standard-machine-type (n1-standard-2), premium-machine-type (n1-standard-4)
        What `instance_type` standard and premium mean.
    ssh-user (cloudbrain), network, subnetwork, disk-size-gb (20), disk-type (pd-balanced),
    external-ip (true), preemptible, spot, ca-file, metadata-host, token-uri-override
)",
    .environment = R"(    GCE_METADATA_HOST
        The metadata server of gce providers that have no credentials file.
)",
    .make = &make,
};

}  // namespace cloudbrain::providers::gce
