#include "providers/pool_driver/hook.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

extern char** environ;

namespace cloudbrain::pool_driver {
namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::string errno_text(int e) { return std::strerror(e); }

// Closes a descriptor it owns.
struct owned_fd {
  int fd = -1;
  explicit owned_fd(int f = -1) : fd(f) {}
  owned_fd(const owned_fd&) = delete;
  owned_fd& operator=(const owned_fd&) = delete;
  ~owned_fd() {
    if (fd >= 0) ::close(fd);
  }
  int release() {
    const int f = fd;
    fd = -1;
    return f;
  }
};

}  // namespace

asio::awaitable<hook_outcome> run_hook(const std::string& command,
                                       const std::map<std::string, std::string>& environment,
                                       std::string input,
                                       std::chrono::steady_clock::time_point deadline) {
  using namespace asio::experimental::awaitable_operators;
  auto ex = co_await asio::this_coro::executor;

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    co_return hook_outcome{false, "cannot start: pipe: " + errno_text(errno)};
  }
  owned_fd read_end(pipe_fds[0]);
  owned_fd write_end(pipe_fds[1]);

  // The driver's environment, with the hook's variables over it.
  std::vector<std::string> env_text;
  for (char** e = environ; e && *e; ++e) {
    const std::string entry(*e);
    const auto eq = entry.find('=');
    if (eq != std::string::npos && environment.contains(entry.substr(0, eq))) continue;
    env_text.push_back(entry);
  }
  for (const auto& [k, v] : environment) env_text.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& e : env_text) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, read_end.fd, STDIN_FILENO);
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  posix_spawnattr_setflags(&attributes,
                           POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawnattr_setpgroup(&attributes, 0);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attributes, &none);
  // The driver ignores SIGPIPE; the hook's commands expect it as usual.
  sigset_t defaults;
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGPIPE);
  posix_spawnattr_setsigdefault(&attributes, &defaults);
  std::string shell = "/bin/sh";
  std::string dash_c = "-c";
  std::string script = command;
  char* argv[] = {shell.data(), dash_c.data(), script.data(), nullptr};
  pid_t pid = 0;
  const int spawned = ::posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (spawned != 0) co_return hook_outcome{false, "cannot start: " + errno_text(spawned)};
  ::close(read_end.release());

  // A descriptor that becomes readable when the child exits (Linux 5.3).
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int e = errno;
    ::kill(-pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);  // it dies at once: SIGKILL cannot be held off
    co_return hook_outcome{false, "cannot watch the hook: pidfd_open: " + errno_text(e)};
  }
  asio::posix::stream_descriptor exited(ex, pidfd);

  // Its input, then end of file. A hook that does not read it gets EPIPE, which is fine.
  {
    asio::posix::stream_descriptor to_hook(ex, write_end.release());
    if (!input.empty()) {
      asio::steady_timer limit(ex, deadline);
      co_await (asio::async_write(to_hook, asio::buffer(input), use_tuple) ||
                limit.async_wait(use_tuple));
    }
  }

  asio::steady_timer limit(ex, deadline);
  auto waited = co_await (exited.async_wait(asio::posix::stream_descriptor::wait_read, use_tuple) ||
                          limit.async_wait(use_tuple));
  const bool killed = waited.index() == 1;
  if (killed) ::kill(-pid, SIGKILL);
  int status = 0;
  // Exited (or just killed, which a process cannot refuse): waitpid returns at once.
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (killed) co_return hook_outcome{false, "killed at its deadline"};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) co_return hook_outcome{true, "exit status 0"};
  if (WIFEXITED(status)) {
    co_return hook_outcome{false, "exit status " + std::to_string(WEXITSTATUS(status))};
  }
  co_return hook_outcome{false, "killed by signal " + std::to_string(WTERMSIG(status))};
}

}  // namespace cloudbrain::pool_driver
