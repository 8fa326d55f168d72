// Every EC2 answer parser: the XML reader itself, RunInstances, DescribeInstances,
// TerminateInstances, DescribeImages, the capacity reservation calls, error documents, the shared
// credentials file and IMDS's answers. The first byte picks the parser.
#include "providers/aws/credentials.hpp"
#include "providers/aws/wire.hpp"
#include "providers/aws/xml.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string_view>

CLOUDBRAIN_FUZZ_TARGET(aws_wire) {
  if (size == 0) return 0;
  namespace aws = cloudbrain::providers::aws;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto now = cloudbrain::system_clock::now();
  switch (data[0] % 13) {
    case 0: (void)aws::parse_xml(body); break;
    case 1: (void)aws::parse_run_instances(body, data[0] & 0x80); break;
    case 2: (void)aws::parse_describe_instances(body, data[0] & 0x80); break;
    case 3: (void)aws::parse_terminate_instances(body); break;
    case 4:
      if (auto page = aws::parse_describe_images(body)) (void)aws::newest_image(page->images);
      break;
    case 5: (void)aws::parse_create_capacity_reservation(body); break;
    case 6: (void)aws::parse_describe_capacity_reservations(body); break;
    case 7: (void)aws::parse_cancel_capacity_reservation(body); break;
    case 8: (void)aws::error_from_response(error_status(body), body, now, now); break;
    case 9: (void)aws::parse_shared_credentials(body, "default", "/fuzz/credentials"); break;
    case 10: (void)aws::first_role(body); break;
    case 11: (void)aws::parse_imds_credentials(body); break;
    default: (void)aws::parse_form(body); break;
  }
  return 0;
}
