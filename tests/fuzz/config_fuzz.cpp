// The configuration file parser: the bytes as the INI file of `cloudbrain serve`, with every
// provider section it defines built the way serve builds them (which checks each type's keys).
#include "core/config.hpp"
#include "providers/driver.hpp"
#include "tests/fuzz/fuzz_target.hpp"

#include <boost/asio/io_context.hpp>

#include <unistd.h>
#include <cstdio>
#include <string>

CLOUDBRAIN_FUZZ_TARGET(config) {
  static const std::string path = [] {
    char name[] = "/tmp/cloudbrain-config-fuzz-XXXXXX";
    const int fd = mkstemp(name);
    if (fd >= 0) close(fd);
    return std::string(name);
  }();
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  const auto env = [](const std::string& name) -> std::optional<std::string> {
    if (name == "CREDENTIALS_DIRECTORY") return std::string("/run/credentials/cloudbrain.service");
    return std::nullopt;
  };
  auto cfg = cloudbrain::load_config({"--config", path, "--database-url", "postgresql://x/y"}, env);
  if (!cfg) return 0;
  static boost::asio::io_context ioc;
  for (const auto& section : cfg->providers) {
    // Types that need a blocking pool refuse without one: a clean error, never a crash.
    (void)cloudbrain::providers::make_driver(section, {ioc.get_executor(), cfg->deployment});
  }
  return 0;
}
