#include "tests/integration/pg/support.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace cloudbrain::pg::test {

std::string database_url() {
  const char* url = std::getenv("CLOUDBRAIN_TEST_DATABASE_URL");
  return url == nullptr ? std::string() : std::string(url);
}

std::string unique_name(std::string_view prefix) {
  static int counter = 0;
  return std::string(prefix) + "_" + std::to_string(::getpid()) + "_" + std::to_string(++counter);
}

io_runner::io_runner(int threads) : work_(context_.get_executor()) {
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { context_.run(); });
}

io_runner::~io_runner() {
  work_.reset();
  for (auto& t : threads_) t.join();
}

std::unique_ptr<connection> connect_or_fail(io_runner& io, const std::string& url,
                                            std::string application_name) {
  connect_options options;
  options.application_name = std::move(application_name);
  auto c = io.run([&]() { return connection::connect(io.executor(), url, in(10s), options); });
  if (!c) {
    ADD_FAILURE() << "cannot connect to " << url << ": " << c.error().message();
    return nullptr;
  }
  return std::move(*c);
}

namespace {

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

}  // namespace

bool throwaway_cluster::create() {
  const char* env = std::getenv("CLOUDBRAIN_TEST_PG_BINDIR");
  bindir_ = env != nullptr ? env : CLOUDBRAIN_PG_BINDIR;
  if (bindir_.empty() || !std::filesystem::exists(bindir_ + "/initdb") ||
      !std::filesystem::exists(bindir_ + "/pg_ctl")) {
    ADD_FAILURE() << "initdb/pg_ctl not found (bindir \"" << bindir_
                  << "\"): the restart tests run a PostgreSQL server of their own; install the "
                     "server package or set CLOUDBRAIN_TEST_PG_BINDIR";
    return false;
  }
  std::string pattern = (std::filesystem::temp_directory_path() / "cloudbrain-pg-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
    return false;
  }
  dir_ = pattern;
  if (::geteuid() == 0) {
    // PostgreSQL refuses to run as root.
    std::filesystem::permissions(dir_, std::filesystem::perms(0755));
    if (std::system(("chown postgres '" + dir_ + "'").c_str()) != 0) {
      ADD_FAILURE() << "cannot hand " << dir_ << " to the user postgres";
      return false;
    }
  }
  port_ = free_loopback_port();
  if (!run("'" + bindir_ + "/initdb' -D '" + dir_ + "/data' -A trust -U postgres -N >'" + dir_ +
           "/initdb.log' 2>&1")) {
    ADD_FAILURE() << "initdb failed; see " << dir_ << "/initdb.log";
    return false;
  }
  return start();
}

bool throwaway_cluster::start() {
  const std::string options = "-p " + std::to_string(port_) + " -k '" + dir_ +
                              "' -c listen_addresses=127.0.0.1 -c fsync=off";
  if (!run("'" + bindir_ + "/pg_ctl' -D '" + dir_ + "/data' -o \"" + options + "\" -l '" + dir_ +
           "/log' -w -t 60 start >/dev/null")) {
    ADD_FAILURE() << "pg_ctl start failed; see " << dir_ << "/log";
    return false;
  }
  running_ = true;
  return true;
}

bool throwaway_cluster::stop() {
  if (!run("'" + bindir_ + "/pg_ctl' -D '" + dir_ + "/data' -m fast -w -t 60 stop >/dev/null")) {
    ADD_FAILURE() << "pg_ctl stop failed";
    return false;
  }
  running_ = false;
  return true;
}

std::string throwaway_cluster::url() const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/postgres";
}

bool throwaway_cluster::run(const std::string& command) const {
  // Redirections in `command` are the outer shell's; only the program runs as postgres.
  const std::string full = ::geteuid() == 0 ? "runuser -u postgres -- " + command : command;
  return std::system(full.c_str()) == 0;
}

throwaway_cluster::~throwaway_cluster() {
  if (dir_.empty()) return;
  if (running_) {
    (void)run("'" + bindir_ + "/pg_ctl' -D '" + dir_ +
              "/data' -m immediate -w stop >/dev/null 2>&1");
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace cloudbrain::pg::test
