#include "providers/driver.hpp"

#include "providers/fake/fake_driver.hpp"

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

std::string vm_name_for(std::string_view instance_id) {
  // "cb-" + the UUID: 39 characters, starts with a letter, only [a-z0-9-].
  std::string name = "cb-";
  for (char c : instance_id) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

result<std::unique_ptr<driver>> make_driver(const provider_section& section,
                                            const driver_context& ctx) {
  if (section.type == "fake") {
    auto settings = fake_settings::from_section(section);
    if (!settings) return settings.error();
    return std::unique_ptr<driver>(std::make_unique<fake_driver>(std::move(*settings)));
  }
  return fail(errc::bad_config, "[provider." + section.name + "] type '" + section.type +
                                    "' is not supported (known: fake)");
}

}  // namespace cloudbrain::providers
