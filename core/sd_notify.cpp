#include "core/sd_notify.hpp"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace cloudbrain {

sd_notifier::sd_notifier() {
  if (const char* s = std::getenv("NOTIFY_SOCKET"); s && (s[0] == '/' || s[0] == '@')) {
    socket_path_ = s;
  }
  const char* usec = std::getenv("WATCHDOG_USEC");
  const char* pid = std::getenv("WATCHDOG_PID");
  if (usec && *usec) {
    char* end = nullptr;
    const unsigned long long us = std::strtoull(usec, &end, 10);
    const bool ours = !pid || !*pid || std::strtoll(pid, nullptr, 10) == ::getpid();
    if (end && *end == '\0' && us > 0 && ours) {
      watchdog_interval_ = std::chrono::microseconds(us / 2);
    }
  }
}

bool sd_notifier::notify(std::string_view state) const {
  if (socket_path_.empty()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path_.size() >= sizeof addr.sun_path) return false;
  std::memcpy(addr.sun_path, socket_path_.data(), socket_path_.size());
  socklen_t len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + socket_path_.size());
  if (addr.sun_path[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract namespace: no terminating NUL counted
  } else {
    len += 1;
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return false;
  const auto sent = ::sendto(fd, state.data(), state.size(), MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&addr), len);
  ::close(fd);
  return sent == static_cast<ssize_t>(state.size());
}

}  // namespace cloudbrain
