#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace cloudbrain {

// systemd's notify protocol (sd_notify(3)), without libsystemd: datagrams to $NOTIFY_SOCKET
// ("READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=..."). Without $NOTIFY_SOCKET every call does
// nothing. A send is one non-blocking sendto(), cheap enough for the event loop.
class sd_notifier {
 public:
  // Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID from the environment.
  sd_notifier();

  [[nodiscard]] bool enabled() const { return !socket_path_.empty(); }
  // Sends `state`; false if there is no socket or the send failed (never fatal).
  bool notify(std::string_view state) const;
  // How often to send WATCHDOG=1 (half of WATCHDOG_USEC), if the watchdog is on for us.
  [[nodiscard]] std::optional<std::chrono::microseconds> watchdog_interval() const {
    return watchdog_interval_;
  }

 private:
  std::string socket_path_;  // "@..." for the abstract namespace
  std::optional<std::chrono::microseconds> watchdog_interval_;
};

}  // namespace cloudbrain
