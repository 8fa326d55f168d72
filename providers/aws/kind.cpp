#include "providers/aws/aws_driver.hpp"
#include "providers/aws/credentials.hpp"
#include "providers/registry.hpp"

namespace cloudbrain::providers::aws {
namespace {

result<std::unique_ptr<driver>> make(const provider_section& section, const driver_context& ctx) {
  auto settings = aws_settings::from_section(section);
  if (!settings) return settings.error();
  const auto env = process_environment();
  // AWS's SDKs let AWS_EC2_METADATA_SERVICE_ENDPOINT move IMDS; the section's own
  // metadata-endpoint still wins.
  if (auto imds = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
      imds && !imds->empty() && !section.settings.contains("metadata-endpoint")) {
    std::string e = *imds;
    while (!e.empty() && e.back() == '/') e.pop_back();
    auto url = net::parse_url(e + "/");
    if (!url || url->target != "/") {
      return fail(errc::bad_config,
                  "AWS_EC2_METADATA_SERVICE_ENDPOINT must be an http(s) URL without a path, not '" +
                      *imds + "'");
    }
    settings->metadata_endpoint = e;
  }
  // The environment's credentials, read once here; used when there is no credentials file.
  auto from_env = credentials_from_environment(env);
  if (!from_env) {
    return fail(errc::bad_config, "[provider." + section.name + "] " + from_env.error().detail);
  }
  if (!ctx.blocking) return fail(errc::internal, "the aws driver needs a blocking pool");
  return std::unique_ptr<driver>(
      std::make_unique<aws_driver>(std::move(*settings), ctx, std::move(*from_env)));
}

}  // namespace

extern const cloud_kind kind{
    .type = "aws",
    .summary = "Amazon EC2, on its Query API signed with SigV4",
    .keys = R"(    region (required)
        The region of `zones` (its availability zones) and of the endpoint.
    credentials, profile (default)
        An AWS shared credentials file and its profile; without them the environment's
        AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN, else IMDSv2.
    standard-instance-type (m5.large), premium-instance-type (m5.2xlarge)
        What `instance_type` standard and premium mean.
    image-owners (self)
        Owners whose images `image` may name (an AMI id is taken as it is).
    subnets (ZONE=SUBNET ...), security-groups, ssh-user (cloudbrain), public-ip (true),
    ca-file, metadata-endpoint (http://169.254.169.254)
)",
    .environment = R"(    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
        Credentials of aws providers that have no credentials file.
    AWS_EC2_METADATA_SERVICE_ENDPOINT
        IMDS of aws providers that find their credentials there.
)",
    .make = &make,
};

}  // namespace cloudbrain::providers::aws
