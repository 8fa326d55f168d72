// Every Compute Engine response parser: operations, instances, lists, reservations, errors and
// the markers kept in a reservation's description. The first byte picks the parser.
#include "providers/gce/wire.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string_view>

CLOUDBRAIN_FUZZ_TARGET(gce_wire) {
  if (size == 0) return 0;
  namespace gce = cloudbrain::providers::gce;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 8) {
    case 0:
      if (auto op = gce::parse_operation(body)) (void)gce::error_from_operation(*op);
      break;
    case 1: (void)gce::parse_instance(body, true); break;
    case 2: (void)gce::parse_instance(body, false); break;
    case 3: (void)gce::parse_instance_list(body, true); break;
    case 4: (void)gce::parse_reservation(body); break;
    case 5: (void)gce::parse_reservation_list(body); break;
    case 6: (void)gce::error_from_response(400 + data[0] % 200, body); break;
    default: (void)gce::labels_from_description(body); break;
  }
  return 0;
}
