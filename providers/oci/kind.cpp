#include "providers/oci/oci_driver.hpp"
#include "providers/registry.hpp"

namespace cloudbrain::providers::oci {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context& ctx) {
  auto settings = oci_settings::from_section(section);
  if (!settings) return settings.error();
  if (!ctx.blocking) return fail(errc::internal, "the oci driver needs a blocking pool");
  return std::unique_ptr<driver>(std::make_unique<oci_driver>(std::move(*settings), ctx));
}

}  // namespace

extern const cloud_kind kind{
    .type = "oci",
    .summary = "Oracle Cloud Infrastructure, on its Core Services API 20160918",
    .keys = R"(    region (required unless the endpoint or the config-file profile gives it),
    compartment, subnet (required)
        Where instances and capacity reservations are made (OCIDs); zones are availability
        domains (Uocm:US-ASHBURN-AD-1 ...), and `image` is an image OCID.
    tenancy, user, fingerprint, key-file, pass-phrase
        The API signing key (key-file is its PEM private key); or instead:
    config-file, profile (DEFAULT)
        An OCI CLI/SDK configuration file (~/.oci/config) and the profile to read them from.
    standard-shape (VM.Standard.E4.Flex), standard-ocpus (1), standard-memory-gb (8),
    premium-shape (VM.Standard.E4.Flex), premium-ocpus (4), premium-memory-gb (32)
        What `instance_type` standard and premium mean; OCPUs and memory for Flex shapes only.
    ssh-user (opc), assign-public-ip (true), boot-volume-size-gb (the image's), ca-file
)",
    .environment = "",
    .make = &make,
};

}  // namespace cloudbrain::providers::oci
