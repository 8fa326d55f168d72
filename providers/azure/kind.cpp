#include "providers/azure/azure_driver.hpp"
#include "providers/registry.hpp"

namespace cloudbrain::providers::azure {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context& ctx) {
  auto settings = azure_settings::from_section(section);
  if (!settings) return settings.error();
  if (!settings->client_secret_file.empty() && !ctx.blocking) {
    return fail(errc::internal, "the azure driver needs a blocking pool for its secret file");
  }
  return std::unique_ptr<driver>(std::make_unique<azure_driver>(std::move(*settings), ctx));
}

}  // namespace

extern const cloud_kind kind{
    .type = "azure",
    .summary = "Microsoft Azure virtual machines and capacity reservations, on Resource Manager",
    .keys = R"(    subscription, resource-group, location, subnet (all required)
        Where VMs are made; `subnet` is the resource id of the subnet their NICs join.
    tenant, client-id, client-secret (default: the managed identity)
        An app registration's client credentials (client-secret = @/path reads a file);
        client-id alone picks a user-assigned managed identity.
    standard-vm-size (Standard_D2s_v5), premium-vm-size (Standard_D4s_v5)
        What `instance_type` standard and premium mean. `image` is
        publisher:offer:sku:version or an image resource id.
    ssh-user (azureuser), public-ip (true), os-disk-type (StandardSSD_LRS), os-disk-size-gb,
    capacity-reservation-group (cloudbrain-NAME), login-endpoint, imds-endpoint, ca-file
)",
    .environment = "",
    .make = &make,
};

}  // namespace cloudbrain::providers::azure
