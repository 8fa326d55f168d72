// Every OCI Core API answer parser: instances and their lists, VNIC attachments and VNICs,
// compute capacity reservations and their lists, work requests and their errors, and error
// answers. The first byte picks the parser.
#include "providers/oci/wire.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <string_view>

CLOUDBRAIN_FUZZ_TARGET(oci_wire) {
  if (size == 0) return 0;
  namespace oci = cloudbrain::providers::oci;
  std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 9) {
    case 0: (void)oci::parse_instance(body); break;
    case 1: (void)oci::parse_instance_list(body); break;
    case 2:
      if (auto list = oci::parse_vnic_attachments(body)) (void)oci::primary_attachment(*list);
      break;
    case 3: (void)oci::parse_vnic(body); break;
    case 4: (void)oci::parse_reservation(body); break;
    case 5: (void)oci::parse_reservation_list(body); break;
    case 6: (void)oci::parse_work_request(body); break;
    case 7:
      if (auto errors = oci::parse_work_request_errors(body)) {
        oci::work_request wr;
        wr.id = "ocid1.coreservicesworkrequest.oc1..fuzz";
        wr.status = oci::work_request_status::failed;
        (void)oci::error_from_work_request(wr, *errors);
      }
      break;
    default: {
      const oci::response_context ctx{"opc-1", "Sun, 06 Dec 2026 16:00:00 GMT",
                                      cloudbrain::system_clock::now()};
      (void)oci::error_from_response(error_status(body), body, ctx);
      break;
    }
  }
  return 0;
}
