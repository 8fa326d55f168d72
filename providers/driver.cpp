#include "providers/driver.hpp"

#include "providers/registry.hpp"

namespace cloudbrain::providers {

std::string_view to_string(vm_status s) {
  switch (s) {
    case vm_status::provisioning: return "provisioning";
    case vm_status::running: return "running";
    case vm_status::stopping: return "stopping";
    case vm_status::terminated: return "terminated";
  }
  return "unknown";
}

std::string_view to_string(reservation_status s) {
  switch (s) {
    case reservation_status::creating: return "creating";
    case reservation_status::ready: return "ready";
    case reservation_status::deleting: return "deleting";
    case reservation_status::updating: return "updating";
    case reservation_status::invalid: return "invalid";
  }
  return "unknown";
}

namespace {
error no_reservations(const driver& d) {
  return error(errc::cloud_permanent,
               "capacity reservations are not supported by provider type " + std::string(d.type()));
}
}  // namespace

boost::asio::awaitable<result<cloud_reservation>> driver::reserve(const reservation_spec&,
                                                                  deadline) {
  co_return no_reservations(*this);
}

boost::asio::awaitable<result<cloud_reservation>> driver::get_reservation(const reservation_ref&,
                                                                          deadline) {
  co_return no_reservations(*this);
}

boost::asio::awaitable<result<void>> driver::release(const reservation_ref&, const std::string&,
                                                     deadline) {
  co_return no_reservations(*this);
}

boost::asio::awaitable<result<std::vector<cloud_reservation>>> driver::list_reservations(
    const std::string&, deadline) {
  co_return no_reservations(*this);
}

boost::asio::awaitable<void> driver::pace() const {
  if (pacer_) {
    auto wait = pacer_();
    co_await std::move(wait);
  }
}

std::string vm_name_for(std::string_view instance_id) {
  // "cb-" + the UUID: 39 characters, starts with a letter, only [a-z0-9-].
  std::string name = "cb-";
  for (char c : instance_id) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

std::string reservation_name_for(std::string_view reservation_id) {
  // "cbr-" + the UUID: 40 characters, starts with a letter, only [a-z0-9-].
  std::string name = "cbr-";
  for (char c : reservation_id)
    name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

result<std::unique_ptr<driver>> make_driver(const provider_section& section,
                                            const driver_context& ctx) {
  const auto* kind = find_cloud_kind(section.type);
  if (!kind) {
    return fail(errc::bad_config, "[provider." + section.name + "] type '" + section.type +
                                      "' is not supported (known: " + cloud_type_names() + ")");
  }
  return kind->make(section, ctx);
}

}  // namespace cloudbrain::providers
