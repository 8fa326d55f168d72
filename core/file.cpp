#include "core/file.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace cloudbrain {

result<std::string> read_whole_file(const std::string& path, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(errc::bad_config, std::strerror(errno));
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<std::size_t>(in.gcount()));
    if (text.size() > max_bytes) {
      return fail(errc::bad_config, "larger than " + std::to_string(max_bytes / 1024) + " KiB");
    }
  }
  if (in.bad()) return fail(errc::bad_config, std::strerror(errno));
  return text;
}

}  // namespace cloudbrain
