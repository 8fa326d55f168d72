// Every Azure Resource Manager answer parser: virtual machines and their lists, network
// interfaces, long-running operations, capacity reservations and their lists, ARM errors and
// Entra ID's or IMDS's token answers. The first byte picks the parser.
#include "providers/azure/wire.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string_view>

CLOUDBRAIN_FUZZ_TARGET(azure_wire) {
  if (size == 0) return 0;
  namespace azure = cloudbrain::providers::azure;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0:
      if (auto v = azure::parse_vm(body)) {
        (void)azure::status_of(*v);
        (void)azure::to_vm(*v);
      }
      break;
    case 1: (void)azure::parse_vm_list(body); break;
    case 2: (void)azure::parse_nic_address(body, data[0] & 0x80); break;
    case 3: (void)azure::parse_async_operation(body); break;
    case 4: (void)azure::parse_reservation(body); break;
    case 5: (void)azure::parse_reservation_list(body); break;
    case 6: (void)azure::error_from_response(error_status(body), body); break;
    case 7: (void)azure::image_reference_for(body); break;
    default: (void)azure::parse_token_response(body, cloudbrain::system_clock::now()); break;
  }
  return 0;
}
