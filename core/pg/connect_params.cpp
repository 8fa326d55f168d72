#include "core/pg/connect_params.hpp"

#include <libpq-fe.h>
#include <boost/asio/ip/address.hpp>

#include <algorithm>
#include <memory>

namespace cloudbrain::pg::detail {

result<connect_params> connect_params::parse(std::string_view conninfo) {
  char* message = nullptr;
  const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> options(
      PQconninfoParse(std::string(conninfo).c_str(), &message), &PQconninfoFree);
  if (options == nullptr) {
    // libpq's message may quote the part it could not parse, which may be the password.
    PQfreemem(message);
    return fail(errc::bad_config, "the database connection string is not valid");
  }
  connect_params out;
  for (const PQconninfoOption* o = options.get(); o->keyword != nullptr; ++o) {
    if (o->val != nullptr) out.entries_.emplace_back(o->keyword, o->val);
  }
  return out;
}

std::optional<std::string_view> connect_params::get(std::string_view keyword) const {
  for (const auto& [k, v] : entries_) {
    if (k == keyword) return v;
  }
  return std::nullopt;
}

void connect_params::set(std::string_view keyword, std::string value) {
  for (auto& [k, v] : entries_) {
    if (k == keyword) {
      v = std::move(value);
      return;
    }
  }
  entries_.emplace_back(keyword, std::move(value));
}

void connect_params::apply(const connect_options& options) {
  if (!options.application_name.empty()) {
    set("fallback_application_name", options.application_name);
  }
  // The server reads these like command-line switches, after the ones already in `options`.
  std::string server_options(get("options").value_or(""));
  const auto add = [&](std::string_view name, std::chrono::milliseconds value) {
    if (value.count() <= 0) return;
    if (!server_options.empty()) server_options += ' ';
    server_options += "-c ";
    server_options += name;
    server_options += '=';
    server_options += std::to_string(value.count());
  };
  add("statement_timeout", options.statement_timeout);
  add("client_connection_check_interval", options.client_connection_check_interval);
  add("idle_session_timeout", options.idle_session_timeout);
  add("tcp_user_timeout", options.tcp_user_timeout);
  if (!server_options.empty()) set("options", std::move(server_options));
  if (options.tcp_user_timeout.count() > 0) {
    // libpq's own side, in whole seconds for the keepalives; what the string says wins.
    const auto seconds = std::to_string(std::max<std::int64_t>(
        1, std::chrono::ceil<std::chrono::seconds>(options.tcp_user_timeout / 3).count()));
    const auto keep = [this](std::string_view keyword, std::string value) {
      if (!get(keyword)) set(keyword, std::move(value));
    };
    keep("tcp_user_timeout", std::to_string(options.tcp_user_timeout.count()));
    keep("keepalives", "1");
    keep("keepalives_idle", seconds);
    keep("keepalives_interval", seconds);
    keep("keepalives_count", "2");
  }
}

std::optional<std::string> connect_params::host_to_resolve(
    std::optional<std::string_view> env_host, std::optional<std::string_view> env_hostaddr) const {
  if (get("hostaddr") || (env_hostaddr && !env_hostaddr->empty())) return std::nullopt;
  const auto host = get("host") ? get("host") : env_host;
  if (!host || host->empty()) return std::nullopt;  // the default Unix socket
  if (host->find(',') != std::string_view::npos) return std::nullopt;
  if (host->front() == '/' || host->front() == '@') return std::nullopt;  // a socket directory
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(*host, ec);
  if (!ec) return std::nullopt;
  return std::string(*host);
}

void connect_params::set_resolved(std::string_view host, std::span<const std::string> addresses) {
  std::string hosts;
  std::string hostaddrs;
  for (const auto& a : addresses) {
    if (!hosts.empty()) {
      hosts += ',';
      hostaddrs += ',';
    }
    hosts += host;
    hostaddrs += a;
  }
  set("host", std::move(hosts));
  set("hostaddr", std::move(hostaddrs));
}

std::vector<const char*> connect_params::keywords() const {
  std::vector<const char*> out;
  out.reserve(entries_.size() + 1);
  for (const auto& e : entries_) out.push_back(e.first.c_str());
  out.push_back(nullptr);
  return out;
}

std::vector<const char*> connect_params::values() const {
  std::vector<const char*> out;
  out.reserve(entries_.size() + 1);
  for (const auto& e : entries_) out.push_back(e.second.c_str());
  out.push_back(nullptr);
  return out;
}

}  // namespace cloudbrain::pg::detail
