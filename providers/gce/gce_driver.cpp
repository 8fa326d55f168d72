#include "providers/gce/gce_driver.hpp"

#include "core/log.hpp"

#include <boost/json/serialize.hpp>

#include <charconv>

namespace cloudbrain::providers::gce {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

net::client_config client_config_for(const gce_settings& s) {
  net::client_config c;
  c.ca_file = s.ca_file;
  c.verify_tls = true;
  c.user_agent = "cloudbrain gce-driver";
  return c;
}

}  // namespace

gce_driver::gce_driver(gce_settings settings, const driver_context& ctx)
    : settings_(std::move(settings)),
      http_(ctx.executor, client_config_for(settings_)),
      tokens_(settings_, http_, ctx.blocking) {}

boost::json::object gce_driver::details() const {
  const auto& t = tokens_.stats();
  return {{"project", settings_.project},
          {"requests", calls_.requests},
          {"retried", calls_.retried},
          {"operation_waits", operation_waits_},
          {"auth_retries", calls_.auth_retries},
          {"token_source", tokens_.from_metadata_server() ? "metadata" : "service-account key"},
          {"token_fetches", t.fetches},
          {"token_failures", t.failures}};
}

asio::awaitable<result<net::client_response>> gce_driver::call(http::verb method, std::string url,
                                                               std::string body, deadline dl) {
  std::string token;  // the one the last try was sent with
  cloud_request_hooks hooks;
  hooks.pace = [this] { return pace(); };
  hooks.make = [&](deadline d) -> asio::awaitable<result<net::client_request>> {
    auto getting = tokens_.token(d);
    auto got = co_await std::move(getting);
    if (!got) co_return got.error();
    token = std::move(*got);
    net::client_request req;
    req.method = method;
    req.url = url;
    req.headers = {{"Authorization", "Bearer " + token}, {"Accept", "application/json"}};
    if (!body.empty()) req.headers.emplace_back("Content-Type", "application/json");
    req.body = body;
    co_return req;
  };
  hooks.classify = [](const net::client_response& res) {
    return error_from_response(res.status, res.body);
  };
  // Expired or revoked before we thought: one new token, then the same call again.
  hooks.on_unauthorized = [&] { tokens_.invalidate(token); };
  const cloud_request_policy policy;
  auto sending = send_cloud_request(http_, hooks, policy, dl, calls_, rng_);
  co_return co_await std::move(sending);
}

asio::awaitable<result<operation>> gce_driver::wait_for(operation op, const std::string& zone,
                                                        deadline dl) {
  // operations/{op}/wait answers when the operation is DONE or after a while (up to two
  // minutes at Google), whichever is first; it may also answer early. Loop, and pause a little
  // when it answered at once without progress so that a fast-answering server is not hammered.
  std::chrono::milliseconds pause{100};
  while (!op.done()) {
    if (steady_clock::now() >= dl) {
      co_return fail(errc::timeout, "operation " + op.name + " on " + zone + " not done in time");
    }
    const auto started = steady_clock::now();
    ++operation_waits_;
    auto waiting = call(http::verb::post,
                        api_url(settings_, operation_wait_path(settings_.project, zone, op.name)),
                        std::string(), dl);
    auto res = co_await std::move(waiting);
    if (!res) co_return res.error();
    auto next = parse_operation(res->body);
    if (!next) co_return next.error();
    op = std::move(*next);
    if (!op.done() && steady_clock::now() - started < std::chrono::milliseconds(500)) {
      co_await sleep_for(std::min<steady_clock::duration>(pause, dl - steady_clock::now()));
      pause = std::min(pause * 2, std::chrono::milliseconds(2000));
    }
  }
  co_return op;
}

asio::awaitable<result<operation>> gce_driver::insert(std::string path,
                                                      const boost::json::object& body,
                                                      const std::string& key,
                                                      const std::string& zone, deadline dl) {
  auto inserting = call(http::verb::post, api_url(settings_, path, request_id_query(key)),
                        boost::json::serialize(body), dl);
  auto res = co_await std::move(inserting);
  if (!res) {
    // A 404 on insert is about something the request names (image, network, machine type),
    // not the resource: no retry will make it appear.
    if (res.error().is(errc::cloud_not_found))
      co_return fail(errc::cloud_permanent, res.error().detail);
    co_return res.error();
  }
  auto op = parse_operation(res->body);
  if (!op) co_return op.error();
  auto waiting = wait_for(std::move(*op), zone, dl);
  auto done = co_await std::move(waiting);
  if (!done) co_return done.error();
  if (done->failed()) co_return error_from_operation(*done);
  co_return done;
}

asio::awaitable<result<void>> gce_driver::remove(std::string path, const std::string& key,
                                                 const std::string& zone, deadline dl) {
  auto deleting =
      call(http::verb::delete_, api_url(settings_, path, request_id_query(key)), std::string(), dl);
  auto res = co_await std::move(deleting);
  if (!res) {
    if (res.error().is(errc::cloud_not_found)) co_return result<void>{};  // gone already
    co_return res.error();
  }
  auto op = parse_operation(res->body);
  if (!op) co_return op.error();
  auto waiting = wait_for(std::move(*op), zone, dl);
  auto done = co_await std::move(waiting);
  if (!done) co_return done.error();
  if (done->failed()) {
    error e = error_from_operation(*done);
    if (e.is(errc::cloud_not_found)) co_return result<void>{};
    co_return e;
  }
  co_return result<void>{};
}

asio::awaitable<result<vm>> gce_driver::create(const instance_spec& spec, deadline dl) {
  auto body = build_insert_body(spec, settings_);
  if (!body) co_return body.error();
  auto inserting = insert(instances_path(settings_.project, spec.zone), *body, spec.idempotency_key,
                          spec.zone, dl);
  auto done = co_await std::move(inserting);
  if (!done) co_return done.error();
  // The operation is DONE: read the VM back for its status, addresses and id.
  const vm_ref ref{spec.name, spec.zone, done->target_id};
  auto reading = get(ref, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<vm>> gce_driver::get(const vm_ref& ref, deadline dl) {
  auto reading = call(http::verb::get,
                      api_url(settings_, instance_path(settings_.project, ref.zone, ref.name)),
                      std::string(), dl);
  auto res = co_await std::move(reading);
  if (!res) co_return res.error();
  co_return parse_instance(res->body, settings_.external_ip);
}

asio::awaitable<result<void>> gce_driver::destroy(const vm_ref& ref, const std::string& key,
                                                  deadline dl) {
  auto removing = remove(instance_path(settings_.project, ref.zone, ref.name), key, ref.zone, dl);
  co_return co_await std::move(removing);
}

asio::awaitable<result<std::vector<vm>>> gce_driver::list(const std::string& deployment,
                                                          deadline dl) {
  std::vector<vm> out;
  const std::string filter = list_filter_for_deployment(deployment);
  for (const auto& zone : settings_.zones) {
    std::string page_token;
    for (unsigned pages = 0;; ++pages) {
      if (pages >= 10'000) {
        co_return fail(errc::cloud_transient, "instances.list in " + zone + " never ended");
      }
      auto listing = call(http::verb::get,
                          api_url(settings_, instances_path(settings_.project, zone),
                                  list_query(filter, page_token)),
                          std::string(), dl);
      auto res = co_await std::move(listing);
      if (!res) co_return res.error();  // a partial listing is no listing
      auto page = parse_instance_list(res->body, settings_.external_ip);
      if (!page) co_return page.error();
      for (auto& v : page->items) out.push_back(std::move(v));
      if (page->next_page_token.empty()) break;
      if (page->next_page_token == page_token) {
        co_return fail(errc::cloud_transient, "instances.list in " + zone + " repeated a page");
      }
      page_token = std::move(page->next_page_token);
    }
  }
  co_return out;
}

// ---- reservations ----------------------------------------------------------------------

asio::awaitable<result<cloud_reservation>> gce_driver::reserve(const reservation_spec& spec,
                                                               deadline dl) {
  auto body = build_reservation_body(spec, settings_);
  if (!body) co_return body.error();
  auto inserting = insert(reservations_path(settings_.project, spec.zone), *body,
                          spec.idempotency_key, spec.zone, dl);
  auto done = co_await std::move(inserting);
  if (!done) co_return done.error();
  const reservation_ref ref{spec.name, spec.zone, done->target_id};
  auto reading = get_reservation(ref, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<cloud_reservation>> gce_driver::get_reservation(const reservation_ref& ref,
                                                                       deadline dl) {
  auto reading = call(http::verb::get,
                      api_url(settings_, reservation_path(settings_.project, ref.zone, ref.name)),
                      std::string(), dl);
  auto res = co_await std::move(reading);
  if (!res) co_return res.error();
  auto r = parse_reservation(res->body);
  if (r && r->zone.empty()) r->zone = ref.zone;
  co_return r;
}

asio::awaitable<result<void>> gce_driver::release(const reservation_ref& ref,
                                                  const std::string& key, deadline dl) {
  auto removing =
      remove(reservation_path(settings_.project, ref.zone, ref.name), key, ref.zone, dl);
  co_return co_await std::move(removing);
}

asio::awaitable<result<std::vector<cloud_reservation>>> gce_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  // Reservations have no labels to filter on: every page is read and the description's
  // deployment marker decides.
  std::vector<cloud_reservation> out;
  const std::string ours = label_value(deployment);
  for (const auto& zone : settings_.zones) {
    std::string page_token;
    for (unsigned pages = 0;; ++pages) {
      if (pages >= 10'000) {
        co_return fail(errc::cloud_transient, "reservations.list in " + zone + " never ended");
      }
      auto listing = call(http::verb::get,
                          api_url(settings_, reservations_path(settings_.project, zone),
                                  list_query({}, page_token)),
                          std::string(), dl);
      auto res = co_await std::move(listing);
      if (!res) co_return res.error();  // a partial listing is no listing
      auto page = parse_reservation_list(res->body);
      if (!page) co_return page.error();
      for (auto& r : page->items) {
        const auto it = r.labels_.find(label_deployment);
        if (it == r.labels_.end() || it->second != ours) continue;
        if (r.zone.empty()) r.zone = zone;
        out.push_back(std::move(r));
      }
      if (page->next_page_token.empty()) break;
      if (page->next_page_token == page_token) {
        co_return fail(errc::cloud_transient, "reservations.list in " + zone + " repeated a page");
      }
      page_token = std::move(page->next_page_token);
    }
  }
  co_return out;
}

std::string gce_driver::machine_type_for(std::string_view instance_type) const {
  auto mt = settings_.machine_type_for(instance_type);
  return mt ? *mt : std::string(instance_type);
}

}  // namespace cloudbrain::providers::gce
