#include "providers/oci/oci_driver.hpp"

#include "core/backoff.hpp"
#include "core/file.hpp"
#include "core/log.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>

namespace cloudbrain::providers::oci {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

constexpr std::size_t max_key_file = 64 * 1024;
constexpr std::size_t max_cached_addresses = 100'000;
constexpr unsigned max_pages = 10'000;
constexpr std::string_view page_size = "100";

net::client_config client_config_for(const oci_settings& s) {
  net::client_config c;
  c.ca_file = s.ca_file;
  c.verify_tls = true;
  c.user_agent = "cloudbrain oci-driver";
  return c;
}

std::string header(const net::client_response& res, std::string_view name) {
  const auto it = res.headers.find(name);
  return it == res.headers.end() ? std::string() : std::string(it->value());
}

std::string verb_name(http::verb v) { return std::string(http::to_string(v)); }

// Between two reads of something that is still changing: exponential with full jitter,
// 100 ms at first, at most 2 s.
constexpr backoff_policy poll_backoff{
    std::chrono::milliseconds(100), std::chrono::milliseconds(2000), std::chrono::milliseconds(50)};

}  // namespace

oci_driver::oci_driver(oci_settings settings, const driver_context& ctx)
    : settings_(std::move(settings)),
      blocking_(ctx.blocking),
      http_(ctx.executor, client_config_for(settings_)) {}

boost::json::object oci_driver::details() const {
  return {{"region", settings_.region},
          {"compartment", settings_.compartment},
          {"key_id", settings_.identity.key_id()},
          {"key_source", settings_.config_file.empty() ? std::string("key-file")
                                                       : "config-file " + settings_.config_file +
                                                             " [" + settings_.profile + "]"},
          {"requests", calls_.requests},
          {"retried", calls_.retried},
          {"auth_retries", calls_.auth_retries},
          {"signatures", stats_.signatures},
          {"key_loads", stats_.key_loads},
          {"work_request_polls", stats_.work_request_polls},
          {"state_polls", stats_.state_polls}};
}

// ---- the API key and the request loop -------------------------------------------------------

asio::awaitable<result<signing_key>> oci_driver::load_key() {
  if (!blocking_) co_return fail(errc::internal, "the oci driver needs a blocking pool");
  ++stats_.key_loads;
  const std::string path = settings_.identity.key_file;
  const std::string phrase = settings_.identity.pass_phrase;
  auto reading = blocking_->run([path, phrase]() -> result<signing_key> {
    auto text = read_whole_file(path, max_key_file);
    if (!text) {
      return fail(errc::cloud_auth,
                  "cannot read the OCI API key file '" + path + "': " + text.error().detail);
    }
    auto key = signing_key::from_pem(*text, phrase);
    if (!key) {
      return fail(errc::cloud_auth,
                  "the OCI API key file '" + path + "' cannot be used: " + key.error().detail);
    }
    return key;
  });
  auto key = co_await std::move(reading);
  if (!key) {
    log::warn("the OCI API key cannot be used",
              {{"provider", settings_.name}, {"error", key.error().detail}});
    co_return key.error();
  }
  // OCI finds the public key by the fingerprint in keyId; another key's signatures would be
  // refused on every request, so say which key it is instead.
  if (const auto fp = key->fingerprint(); fp != settings_.identity.fingerprint) {
    co_return fail(errc::cloud_auth, "the OCI API key in '" + path + "' has the fingerprint " + fp +
                                         ", not the configured " + settings_.identity.fingerprint +
                                         ": the key and its fingerprint do not belong together");
  }
  co_return key;
}

asio::awaitable<result<signing_key>> oci_driver::api_key(deadline dl) {
  if (key_) co_return *key_;
  auto loading = key_flight_.run([this] { return load_key(); }, dl, "OCI API key");
  auto key = co_await std::move(loading);
  if (key) key_ = *key;
  co_return key;
}

asio::awaitable<result<net::client_response>> oci_driver::call(http::verb method, std::string path,
                                                               std::string query, std::string body,
                                                               std::string retry_token,
                                                               deadline dl) {
  const std::string url = api_url(settings_, path, query);
  auto parsed = net::parse_url(url);
  if (!parsed) co_return parsed.error();
  const std::string host = host_header(parsed->host, parsed->port, parsed->tls());

  cloud_request_hooks hooks;
  hooks.pace = [this] { return pace(); };
  hooks.make = [&](deadline d) -> asio::awaitable<result<net::client_request>> {
    auto getting = api_key(d);
    auto key = co_await std::move(getting);
    if (!key) co_return key.error();
    signable_request s;
    s.method = verb_name(method);
    s.target = parsed->target;
    s.host = host;
    s.date = http_date(system_clock::now());
    s.body = body;
    auto plan = plan_signature(s);
    // rsa-sha256 is CPU work: off the event loop.
    auto signing = blocking_->run(
        [k = std::move(*key), sts = std::move(plan.signing_string)] { return k.sign(sts); });
    auto signature = co_await std::move(signing);
    if (!signature) co_return signature.error();
    ++stats_.signatures;
    net::client_request req;
    req.method = method;
    req.url = url;
    req.headers = std::move(plan.headers);
    req.headers.emplace_back("Host", host);
    req.headers.emplace_back(
        "Authorization",
        authorization_header(settings_.identity.key_id(), plan.signed_headers, *signature));
    req.headers.emplace_back("Accept", "application/json");
    if (!retry_token.empty()) req.headers.emplace_back("opc-retry-token", retry_token);
    req.body = body;
    co_return req;
  };
  hooks.classify = [](const net::client_response& res) {
    const std::string request_id = header(res, "opc-request-id");
    const std::string date = header(res, "Date");
    return error_from_response(res.status, res.body, {request_id, date, system_clock::now()});
  };
  // The key file may have been replaced (a rotated key): read it again, once.
  hooks.on_unauthorized = [this] { key_.reset(); };
  const cloud_request_policy policy;
  auto sending = send_cloud_request(http_, hooks, policy, dl, calls_, rng_);
  co_return co_await std::move(sending);
}

asio::awaitable<result<std::vector<std::string>>> oci_driver::all_pages(std::string path,
                                                                        std::string query,
                                                                        deadline dl) {
  std::vector<std::string> bodies;
  std::string page;
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages) co_return fail(errc::cloud_transient, "GET " + path + " never ended");
    std::string q = query_string({{"limit", page_size}, {"page", page}});
    if (!query.empty()) q = query + "&" + q;
    auto listing = call(http::verb::get, path, std::move(q), {}, {}, dl);
    auto res = co_await std::move(listing);
    if (!res) co_return res.error();  // a partial listing is no listing
    bodies.push_back(std::move(res->body));
    std::string next = header(*res, "opc-next-page");
    if (next.empty()) break;
    if (next == page) co_return fail(errc::cloud_transient, "GET " + path + " repeated a page");
    page = std::move(next);
  }
  co_return bodies;
}

asio::awaitable<result<void>> oci_driver::follow_work_request(const std::string& id, deadline dl) {
  unsigned polls = 0;
  for (;;) {
    ++stats_.work_request_polls;
    auto reading = call(http::verb::get, "/workRequests/" + id, {}, {}, {}, dl);
    auto res = co_await std::move(reading);
    if (!res) co_return res.error();
    auto wr = parse_work_request(res->body);
    if (!wr) co_return wr.error();
    if (wr->status == work_request_status::succeeded) co_return result<void>{};
    if (wr->finished()) {
      auto listing = call(http::verb::get, "/workRequests/" + id + "/errors",
                          query_string({{"limit", page_size}}), {}, {}, dl);
      auto errors_res = co_await std::move(listing);
      if (!errors_res) co_return errors_res.error();
      auto errors = parse_work_request_errors(errors_res->body);
      if (!errors) co_return errors.error();
      co_return error_from_work_request(*wr, *errors);
    }
    auto waiting = pause_before(dl, polls++);
    if (!co_await std::move(waiting)) {
      co_return fail(errc::timeout, "OCI work request " + id + " (" + wr->operation_type +
                                        ") not finished in time");
    }
  }
}

asio::awaitable<bool> oci_driver::pause_before(deadline dl, unsigned polls) {
  const auto pause = poll_backoff.delay(polls, rng_);
  if (steady_clock::now() + pause >= dl) co_return false;
  co_await sleep_for(pause);
  co_return true;
}

// ---- instances -----------------------------------------------------------------------------

asio::awaitable<result<std::vector<instance_info>>> oci_driver::instances_named(
    const std::string& name, const std::string& zone, deadline dl) {
  auto listing = all_pages("/instances",
                           query_string({{"compartmentId", settings_.compartment},
                                         {"availabilityDomain", zone},
                                         {"displayName", name}}),
                           dl);
  auto pages = co_await std::move(listing);
  if (!pages) co_return pages.error();
  std::vector<instance_info> out;
  for (const auto& body : *pages) {
    auto items = parse_instance_list(body);
    if (!items) co_return items.error();
    for (auto& i : *items) {
      if (i.lifecycle_state != "TERMINATED" && i.v.name == name) out.push_back(std::move(i));
    }
  }
  // The oldest first: the one a first launch made.
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.v.created_at < b.v.created_at; });
  co_return out;
}

asio::awaitable<result<instance_info>> oci_driver::find_instance(const vm_ref& ref, deadline dl) {
  if (!ref.upstream_id.empty()) {
    auto reading = call(http::verb::get, "/instances/" + ref.upstream_id, {}, {}, {}, dl);
    auto res = co_await std::move(reading);
    if (!res) co_return res.error();
    auto info = parse_instance(res->body);
    if (!info) co_return info.error();
    if (info->lifecycle_state == "TERMINATED") {
      co_return fail(errc::cloud_not_found, "instance " + ref.upstream_id + " is TERMINATED");
    }
    co_return info;
  }
  auto finding = instances_named(ref.name, ref.zone, dl);
  auto found = co_await std::move(finding);
  if (!found) co_return found.error();
  if (found->empty()) {
    co_return fail(errc::cloud_not_found, "no instance " + ref.name + " in " + ref.zone);
  }
  co_return std::move(found->front());
}

asio::awaitable<result<vm>> oci_driver::with_address(instance_info info, deadline dl) {
  vm v = std::move(info.v);
  if (v.status != vm_status::running) co_return v;
  auto listing = call(http::verb::get, "/vnicAttachments",
                      query_string({{"compartmentId", settings_.compartment},
                                    {"instanceId", v.upstream_id},
                                    {"availabilityDomain", v.zone}}),
                      {}, {}, dl);
  auto res = co_await std::move(listing);
  // The instance was there a moment ago: a VNIC that is not (any longer) is no address, never
  // a vanished instance.
  if (!res) {
    if (res.error().is(errc::cloud_not_found)) co_return v;
    co_return res.error();
  }
  auto attachments = parse_vnic_attachments(res->body);
  if (!attachments) co_return attachments.error();
  const auto* primary = primary_attachment(*attachments);
  if (!primary) co_return v;  // still attaching: no address yet
  auto reading = call(http::verb::get, "/vnics/" + primary->vnic_id, {}, {}, {}, dl);
  auto vnic_res = co_await std::move(reading);
  if (!vnic_res) {
    if (vnic_res.error().is(errc::cloud_not_found)) co_return v;
    co_return vnic_res.error();
  }
  auto vnic = parse_vnic(vnic_res->body);
  if (!vnic) co_return vnic.error();
  const std::string& address = settings_.assign_public_ip ? vnic->public_ip : vnic->private_ip;
  if (!address.empty()) {
    v.ip_address = address;
    if (addresses_.size() >= max_cached_addresses) addresses_.clear();
    addresses_[v.upstream_id] = address;
  }
  co_return v;
}

asio::awaitable<result<vm>> oci_driver::create(const instance_spec& spec, deadline dl) {
  std::string reservation_id;
  if (!spec.reservation_upstream.empty()) {
    auto finding = reservations_named(spec.reservation_upstream, spec.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    if (found->empty()) {
      co_return fail(
          errc::cloud_permanent,
          "the capacity reservation " + spec.reservation_upstream + " is not in " + spec.zone);
    }
    reservation_id = found->front().r.upstream_id;
  }
  auto body = build_launch_body(spec, settings_, reservation_id);
  if (!body) co_return body.error();
  auto launching = call(http::verb::post, "/instances", {}, boost::json::serialize(*body),
                        retry_token_for(spec.idempotency_key), dl);
  auto res = co_await std::move(launching);
  if (!res) {
    // A 404 on a launch is about what the body names (compartment, subnet, image): no retry
    // will make it appear.
    if (res.error().is(errc::cloud_not_found))
      co_return fail(errc::cloud_permanent, res.error().detail);
    co_return res.error();
  }
  auto launched = parse_instance(res->body);
  if (!launched) co_return launched.error();
  // The launch's work request ends when the instance runs, or says why it never will (an
  // availability domain found to be out of capacity after all).
  if (const auto wr = header(*res, "opc-work-request-id"); !wr.empty()) {
    auto following = follow_work_request(wr, dl);
    auto followed = co_await std::move(following);
    if (!followed) co_return followed.error();
  }
  const vm_ref ref{spec.name, spec.zone, launched->v.upstream_id};
  auto reading = get(ref, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<vm>> oci_driver::get(const vm_ref& ref, deadline dl) {
  auto finding = find_instance(ref, dl);
  auto found = co_await std::move(finding);
  if (!found) co_return found.error();
  auto addressing = with_address(std::move(*found), dl);
  co_return co_await std::move(addressing);
}

asio::awaitable<result<void>> oci_driver::destroy(const vm_ref& ref, const std::string& key,
                                                  deadline dl) {
  std::vector<std::string> ids;
  if (!ref.upstream_id.empty()) {
    ids.push_back(ref.upstream_id);
  } else {
    // By name: every instance of it, should a lost answer ever have made two.
    auto finding = instances_named(ref.name, ref.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    for (const auto& i : *found) ids.push_back(i.v.upstream_id);
  }
  for (const auto& id : ids) {
    auto terminating = call(http::verb::delete_, "/instances/" + id,
                            query_string({{"preserveBootVolume", "false"}}), {},
                            retry_token_for(key + "/" + id), dl);
    auto res = co_await std::move(terminating);
    if (!res && !res.error().is(errc::cloud_not_found)) co_return res.error();
    // Followed until TERMINATED (or gone altogether).
    unsigned polls = 0;
    for (bool done = !res; !done;) {
      ++stats_.state_polls;
      auto reading = call(http::verb::get, "/instances/" + id, {}, {}, {}, dl);
      auto got = co_await std::move(reading);
      if (!got) {
        if (got.error().is(errc::cloud_not_found)) break;
        co_return got.error();
      }
      auto info = parse_instance(got->body);
      if (!info) co_return info.error();
      if (info->lifecycle_state == "TERMINATED") break;
      auto waiting = pause_before(dl, polls++);
      if (!co_await std::move(waiting)) {
        co_return fail(errc::timeout, "instance " + id + " not TERMINATED in time (still " +
                                          info->lifecycle_state + ")");
      }
    }
    addresses_.erase(id);
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<vm>>> oci_driver::list(const std::string& deployment,
                                                          deadline dl) {
  auto listing =
      all_pages("/instances", query_string({{"compartmentId", settings_.compartment}}), dl);
  auto pages = co_await std::move(listing);
  if (!pages) co_return pages.error();
  const std::string ours = tag_value(deployment);
  std::vector<vm> out;
  for (const auto& body : *pages) {
    auto items = parse_instance_list(body);
    if (!items) co_return items.error();
    for (auto& i : *items) {
      const auto it = i.v.labels_.find(label_deployment);
      if (it == i.v.labels_.end() || it->second != ours || i.lifecycle_state == "TERMINATED")
        continue;
      if (i.v.status == vm_status::running) {
        if (auto a = addresses_.find(i.v.upstream_id); a != addresses_.end())
          i.v.ip_address = a->second;
      }
      out.push_back(std::move(i.v));
    }
  }
  co_return out;
}

// ---- compute capacity reservations ------------------------------------------------------------

asio::awaitable<result<std::vector<reservation_summary>>> oci_driver::reservations_named(
    const std::string& name, const std::string& zone, deadline dl) {
  auto listing = all_pages("/computeCapacityReservations",
                           query_string({{"compartmentId", settings_.compartment},
                                         {"availabilityDomain", zone},
                                         {"displayName", name}}),
                           dl);
  auto pages = co_await std::move(listing);
  if (!pages) co_return pages.error();
  std::vector<reservation_summary> out;
  for (const auto& body : *pages) {
    auto items = parse_reservation_list(body);
    if (!items) co_return items.error();
    for (auto& s : *items) {
      if (s.lifecycle_state != "DELETED" && s.r.name == name) out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.r.created_at < b.r.created_at; });
  co_return out;
}

asio::awaitable<result<cloud_reservation>> oci_driver::read_reservation(const std::string& id,
                                                                        deadline dl) {
  auto reading = call(http::verb::get, "/computeCapacityReservations/" + id, {}, {}, {}, dl);
  auto res = co_await std::move(reading);
  if (!res) co_return res.error();
  std::string state;
  auto r = parse_reservation(res->body, &state);
  if (!r) co_return r.error();
  if (state == "DELETED") {
    co_return fail(errc::cloud_not_found, "capacity reservation " + id + " is DELETED");
  }
  co_return r;
}

asio::awaitable<result<cloud_reservation>> oci_driver::reserve(const reservation_spec& spec,
                                                               deadline dl) {
  auto body = build_reservation_body(spec, settings_);
  if (!body) co_return body.error();
  auto creating = call(http::verb::post, "/computeCapacityReservations", {},
                       boost::json::serialize(*body), retry_token_for(spec.idempotency_key), dl);
  auto res = co_await std::move(creating);
  if (!res) {
    if (res.error().is(errc::cloud_not_found))
      co_return fail(errc::cloud_permanent, res.error().detail);
    co_return res.error();
  }
  auto made = parse_reservation(res->body);
  if (!made) co_return made.error();
  if (const auto wr = header(*res, "opc-work-request-id"); !wr.empty()) {
    auto following = follow_work_request(wr, dl);
    auto followed = co_await std::move(following);
    if (!followed) co_return followed.error();
  }
  auto reading = read_reservation(made->upstream_id, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<cloud_reservation>> oci_driver::get_reservation(const reservation_ref& ref,
                                                                       deadline dl) {
  std::string id = ref.upstream_id;
  if (id.empty()) {
    auto finding = reservations_named(ref.name, ref.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    if (found->empty()) {
      co_return fail(errc::cloud_not_found,
                     "no capacity reservation " + ref.name + " in " + ref.zone);
    }
    id = found->front().r.upstream_id;
  }
  auto reading = read_reservation(id, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<void>> oci_driver::release(const reservation_ref& ref,
                                                  const std::string& key, deadline dl) {
  std::vector<std::string> ids;
  if (!ref.upstream_id.empty()) {
    ids.push_back(ref.upstream_id);
  } else {
    auto finding = reservations_named(ref.name, ref.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    for (const auto& s : *found) ids.push_back(s.r.upstream_id);
  }
  for (const auto& id : ids) {
    // A reservation still CREATING is refused with IncorrectState, which the request loop
    // retries with backoff (and the job after it).
    auto deleting = call(http::verb::delete_, "/computeCapacityReservations/" + id, {}, {},
                         retry_token_for(key + "/" + id), dl);
    auto res = co_await std::move(deleting);
    if (!res && !res.error().is(errc::cloud_not_found)) co_return res.error();
    unsigned polls = 0;
    for (bool done = !res; !done;) {
      ++stats_.state_polls;
      auto reading = read_reservation(id, dl);
      auto got = co_await std::move(reading);
      if (!got) {
        if (got.error().is(errc::cloud_not_found)) break;  // DELETED, or gone altogether
        co_return got.error();
      }
      auto waiting = pause_before(dl, polls++);
      if (!co_await std::move(waiting)) {
        co_return fail(errc::timeout, "capacity reservation " + id + " not DELETED in time");
      }
    }
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<cloud_reservation>>> oci_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  auto listing = all_pages("/computeCapacityReservations",
                           query_string({{"compartmentId", settings_.compartment}}), dl);
  auto pages = co_await std::move(listing);
  if (!pages) co_return pages.error();
  const std::string ours = tag_value(deployment);
  std::vector<cloud_reservation> out;
  for (const auto& body : *pages) {
    auto items = parse_reservation_list(body);
    if (!items) co_return items.error();
    for (auto& s : *items) {
      const auto it = s.r.labels_.find(label_deployment);
      if (it == s.r.labels_.end() || it->second != ours || s.lifecycle_state == "DELETED") continue;
      out.push_back(std::move(s.r));
    }
  }
  co_return out;
}

std::string oci_driver::machine_type_for(std::string_view instance_type) const {
  auto shape = settings_.shape_for(instance_type);
  return shape ? (*shape)->describe() : std::string(instance_type);
}

}  // namespace cloudbrain::providers::oci
