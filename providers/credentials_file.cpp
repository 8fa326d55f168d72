#include "providers/credentials_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

namespace cloudbrain::providers {

namespace {
constexpr std::size_t max_credentials_file = 64 * 1024;
}  // namespace

result<std::string> read_credentials_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return fail(errc::bad_config,
                "cannot read the credentials file '" + path + "': " + std::strerror(errno));
  }
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_credentials_file) {
      return fail(errc::bad_config, "the credentials file '" + path + "' is too large for a key");
    }
  }
  return text;
}

steady_clock::duration refresh_margin(steady_clock::duration lifetime) {
  return std::min<steady_clock::duration>(std::chrono::minutes(5), lifetime / 4);
}

}  // namespace cloudbrain::providers
