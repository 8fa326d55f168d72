#include "providers/driver_link.hpp"
#include "providers/external/external_driver.hpp"
#include "providers/registry.hpp"

namespace cloudbrain::providers::external {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context& ctx) {
  auto settings = external_settings::from_section(section);
  if (!settings) return settings.error();
  if (!ctx.drivers) return fail(errc::internal, "the external type needs the driver hub");
  auto port =
      ctx.drivers->attach(remote_provider{section.name, settings->driver, settings->tokens,
                                          settings->zones, settings->config, settings->secret});
  return std::unique_ptr<driver>(
      std::make_unique<external_driver>(section.name, std::move(*settings), std::move(port)));
}

}  // namespace

extern const cloud_kind kind{
    .type = "external",
    .summary = "an out-of-tree driver that connects at /drivers/connect (docs/driver-protocol.md)",
    .keys = R"(    driver (required)
        The name the driver registers with; every driver connection of that name serves the
        section. Make its token with `cloudbrain token create --role driver`.
    driver-tokens
        The ids of the driver tokens whose connections may serve the section (the number
        before the dash, as `cloudbrain token list` shows it), separated by spaces or commas.
        Without it, any driver token may; to any other token the section is as if absent.
    zones (required)
        The zones the driver offers, in the order they are tried.
    secret.KEY
        Handed to the driver only when it asks for its secret (get_secret), never logged.
    any other key
        Handed to the driver as its configuration (get_config), with zones and endpoint. A
        value written @/path is read from that file at start and on reload.
)",
    .environment = "",
    .make = &make,
};

}  // namespace cloudbrain::providers::external
