#include "providers/azure/azure_driver.hpp"

#include "core/backoff.hpp"
#include "core/encoding.hpp"
#include "core/log.hpp"
#include "providers/cloud_call.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <boost/json/serialize.hpp>

#include <stdexcept>

namespace cloudbrain::providers::azure {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

constexpr unsigned max_transient_attempts = 4;
constexpr unsigned max_pages = 10'000;

net::client_config client_config_for(const azure_settings& s) {
  net::client_config c;
  c.ca_file = s.ca_file;
  c.verify_tls = true;
  c.user_agent = "cloudbrain azure-driver";
  return c;
}

// A poll that failed this way is asked again; the operation itself is not over.
bool retryable(const error& e) {
  return e.is(errc::cloud_transient) || e.is(errc::timeout) || e.is(errc::cloud_rate_limited);
}

std::string header_of(const net::client_response& res, std::string_view name) {
  const auto it = res.headers.find(name);
  return it == res.headers.end() ? std::string() : std::string(it->value());
}

// A URL of ours, with an api-version already in its query or not (ids, nextLinks).
std::string with_api_version(std::string url, std::string_view version) {
  if (url.find("api-version=") != std::string::npos) return url;
  url += url.find('?') == std::string::npos ? "?" : "&";
  url.append("api-version=").append(version);
  return url;
}

}  // namespace

azure_driver::azure_driver(azure_settings settings, const driver_context& ctx)
    : settings_(std::move(settings)),
      deployment_(ctx.deployment),
      http_(ctx.executor, client_config_for(settings_)),
      tokens_(settings_, http_, ctx.blocking) {
  if (RAND_bytes(key_secret_.data(), static_cast<int>(key_secret_.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");  // a broken OpenSSL is a bug
  }
}

boost::json::object azure_driver::details() const {
  const auto& t = tokens_.stats();
  boost::json::object o{
      {"subscription", settings_.subscription},
      {"resource_group", settings_.resource_group},
      {"location", settings_.location},
      {"requests", calls_.requests},
      {"retried", calls_.retried},
      {"throttled", stats_.throttled},
      {"operation_polls", stats_.operation_polls},
      {"auth_retries", calls_.auth_retries},
      {"failed_vms_deleted", stats_.failed_vms_deleted},
      {"token_source",
       settings_.auth() == auth_method::managed_identity ? "managed identity" : "client secret"},
      {"token_fetches", t.fetches},
      {"token_failures", t.failures}};
  if (stats_.ratelimit_remaining) o["ratelimit_remaining"] = *stats_.ratelimit_remaining;
  return o;
}

std::string azure_driver::locked_key_for(std::string_view instance_id) const {
  unsigned char seed[EVP_MAX_MD_SIZE];
  unsigned int seed_len = 0;
  if (!HMAC(EVP_sha256(), key_secret_.data(), static_cast<int>(key_secret_.size()),
            reinterpret_cast<const unsigned char*>(instance_id.data()), instance_id.size(), seed,
            &seed_len) ||
      seed_len < 32) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  EVP_PKEY* pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, 32);
  OPENSSL_cleanse(seed, sizeof seed);
  unsigned char pub[32];
  std::size_t pub_len = sizeof pub;
  const bool ok = pkey && EVP_PKEY_get_raw_public_key(pkey, pub, &pub_len) == 1 && pub_len == 32;
  EVP_PKEY_free(pkey);
  if (!ok) throw std::runtime_error("Ed25519 key generation failed");
  // The OpenSSH wire form: string "ssh-ed25519", string key.
  std::string blob;
  auto put_string = [&blob](std::string_view s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    blob += static_cast<char>(n >> 24);
    blob += static_cast<char>(n >> 16);
    blob += static_cast<char>(n >> 8);
    blob += static_cast<char>(n);
    blob.append(s);
  };
  put_string("ssh-ed25519");
  put_string(std::string_view(reinterpret_cast<const char*>(pub), 32));
  return "ssh-ed25519 " + base64_encode(blob) + " cloudbrain-no-login";
}

asio::awaitable<result<net::client_response>> azure_driver::call(http::verb method, std::string url,
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
  hooks.classify = [this](const net::client_response& res) {
    if (auto left = ratelimit_remaining_of(res.headers)) stats_.ratelimit_remaining = left;
    if (res.status == 429) ++stats_.throttled;
    return error_from_response(res.status, res.body);
  };
  // Expired or revoked before we thought: one new token, then the same request again.
  hooks.on_unauthorized = [&] { tokens_.invalidate(token); };
  cloud_request_policy policy;
  policy.max_transient_attempts = max_transient_attempts;
  policy.backoff = backoff_policy{std::chrono::milliseconds(200), std::chrono::milliseconds(5000),
                                  std::chrono::milliseconds(50)};
  auto sending = send_cloud_request(http_, hooks, policy, dl, calls_, rng_);
  auto res = co_await std::move(sending);
  if (res) {
    if (auto left = ratelimit_remaining_of(res->headers)) stats_.ratelimit_remaining = left;
  }
  co_return res;
}

asio::awaitable<result<void>> azure_driver::follow(const net::client_response& started,
                                                   std::string what, deadline dl) {
  std::string status_url = header_of(started, "Azure-AsyncOperation");
  const bool async_operation = !status_url.empty();
  if (!async_operation) status_url = header_of(started, "Location");
  if (status_url.empty()) {
    // Finished at once (a 200 or 204 without headers), or a 201 whose body says how far it is.
    if (started.status == 201 || started.status == 200) {
      auto v = parse_vm(started.body);  // any ARM resource: name + properties.provisioningState
      if (v && lro_status_of_state(v->provisioning_state) == lro_status::failed) {
        co_return fail(errc::cloud_permanent, what + " failed at once");
      }
    }
    co_return result<void>{};
  }
  if (!same_origin(status_url, settings_.endpoint)) {
    co_return fail(errc::cloud_permanent,
                   "ARM pointed the operation of " + what + " at another host; not followed");
  }
  auto wait = retry_after_of(started);
  std::chrono::milliseconds pause{200};
  for (;;) {
    const auto nap = wait > std::chrono::milliseconds::zero()
                         ? std::chrono::duration_cast<std::chrono::milliseconds>(wait)
                         : pause;
    if (steady_clock::now() + nap >= dl) {
      co_return fail(errc::timeout, what + " was not finished before the deadline");
    }
    co_await sleep_for(nap);
    pause = std::min(pause * 2, std::chrono::milliseconds(5000));
    ++stats_.operation_polls;
    auto polling = call(http::verb::get, status_url, std::string(), dl);
    auto res = co_await std::move(polling);
    if (!res) {
      const error& e = res.error();
      // The poll failed, not the operation: ask again (the deadline bounds it). A Location
      // poll's 4xx, though, is how ARM reports the operation's own failure.
      if (retryable(e) || (async_operation && e.is(errc::cloud_not_found))) {
        wait = e.retry_after;
        continue;
      }
      co_return e;
    }
    wait = retry_after_of(*res);
    if (!async_operation) {
      if (res->status == 202) continue;
      co_return result<void>{};  // 200, 201 or 204: done
    }
    auto st = parse_async_operation(res->body);
    if (!st) {
      wait = std::chrono::milliseconds::zero();
      continue;  // a garbled status is a failed poll
    }
    switch (st->status) {
      case lro_status::in_progress: continue;
      case lro_status::succeeded: co_return result<void>{};
      case lro_status::canceled:
        co_return fail(errc::cloud_transient, what + " was canceled by Azure");
      case lro_status::failed:
        if (st->error) co_return error_from_arm(*st->error, 0);
        co_return fail(errc::cloud_transient, what + " failed without a reason");
    }
  }
}

asio::awaitable<result<void>> azure_driver::mutate(http::verb method, std::string url,
                                                   std::string body, std::string what,
                                                   deadline dl) {
  auto sending = call(method, std::move(url), std::move(body), dl);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  auto following = follow(*res, what, dl);
  co_return co_await std::move(following);
}

asio::awaitable<result<void>> azure_driver::remove(std::string url, std::string what, deadline dl) {
  auto removing = mutate(http::verb::delete_, std::move(url), std::string(), what, dl);
  auto gone = co_await std::move(removing);
  if (!gone && gone.error().is(errc::cloud_not_found)) co_return result<void>{};
  co_return gone;
}

asio::awaitable<result<arm_vm>> azure_driver::read_vm(std::string name, deadline dl) {
  auto reading = call(
      http::verb::get,
      arm_url(settings_, vm_path(settings_, name), compute_api_version, "$expand=instanceView"),
      std::string(), dl);
  auto res = co_await std::move(reading);
  if (!res) co_return res.error();
  co_return parse_vm(res->body);
}

asio::awaitable<result<void>> azure_driver::ensure_group(deadline dl) {
  if (group_ready_) co_return result<void>{};
  const auto body = boost::json::serialize(build_group_body(settings_, deployment_));
  auto putting =
      mutate(http::verb::put, arm_url(settings_, group_path(settings_), compute_api_version), body,
             "capacity reservation group " + settings_.capacity_reservation_group, dl);
  auto done = co_await std::move(putting);
  if (!done) co_return done.error();
  group_ready_ = true;
  log::info("capacity reservation group ready",
            {{"provider", settings_.name}, {"group", settings_.capacity_reservation_group}});
  co_return result<void>{};
}

// ---- virtual machines ---------------------------------------------------------------------

asio::awaitable<result<vm>> azure_driver::create(const instance_spec& spec, deadline dl) {
  instance_spec s = spec;
  if (s.public_ssh_key.empty()) s.public_ssh_key = locked_key_for(spec.instance_id);
  std::string group_id;
  if (!s.reservation_upstream.empty()) {
    auto ensuring = ensure_group(dl);
    if (auto ready = co_await std::move(ensuring); !ready) co_return ready.error();
    group_id = group_path(settings_);
  }
  auto body = build_vm_body(s, settings_, group_id);
  if (!body) co_return body.error();
  const std::string text = boost::json::serialize(*body);
  const std::string url = arm_url(settings_, vm_path(settings_, s.name), compute_api_version);
  const std::string what = "VM " + s.name + " in zone " + s.zone;

  for (unsigned attempt = 0;; ++attempt) {
    auto putting = mutate(http::verb::put, url, text, what, dl);
    auto made = co_await std::move(putting);
    if (made) break;
    const error e = made.error();
    if (e.is(errc::cloud_already_exists) && attempt == 0) {
      // A VM of this name is there with settings that cannot change (another zone). One left
      // Failed by an earlier allocation goes; any other is the caller's to adopt.
      auto reading = read_vm(s.name, dl);
      auto existing = co_await std::move(reading);
      if (!existing) co_return existing.error().is(errc::cloud_not_found) ? e : existing.error();
      if (lro_status_of_state(existing->provisioning_state) != lro_status::failed) co_return e;
      auto removing = remove(url, "failed " + what, dl);
      if (auto gone = co_await std::move(removing); !gone) co_return gone.error();
      ++stats_.failed_vms_deleted;
      continue;
    }
    if (e.is(errc::cloud_capacity)) {
      // Azure leaves the VM (and what it made with it) Failed in this zone: delete it before
      // the caller tries the next zone under the same name.
      log::info("allocation failed, deleting the failed VM",
                {{"provider", settings_.name}, {"vm", s.name}, {"zone", s.zone}});
      auto removing = remove(url, "failed " + what, dl);
      if (auto gone = co_await std::move(removing); !gone) {
        co_return fail(errc::cloud_transient,
                       e.detail + "; deleting the failed VM failed too: " + gone.error().detail);
      }
      ++stats_.failed_vms_deleted;
    }
    co_return e;
  }
  const vm_ref ref{s.name, s.zone, ""};
  auto reading = get(ref, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<vm>> azure_driver::get(const vm_ref& ref, deadline dl) {
  auto reading = read_vm(ref.name, dl);
  auto v = co_await std::move(reading);
  if (!v) co_return v.error();
  if (lro_status_of_state(v->provisioning_state) == lro_status::failed) {
    // Failed at its allocation: there is no VM to run; create deletes and remakes it.
    std::string why = v->failure ? v->failure->message + " (" + v->failure->code + ")"
                                 : std::string("provisioning failed");
    co_return fail(errc::cloud_not_found, "VM " + ref.name + " is left Failed: " + why);
  }
  vm out = to_vm(*v);
  if (out.status != vm_status::running || v->nic_ids.empty()) co_return out;
  if (!v->nic_ids.front().starts_with("/subscriptions/") ||
      v->nic_ids.front().find_first_of("?# ") != std::string::npos) {
    co_return fail(errc::cloud_transient, "VM " + ref.name + " has a malformed NIC id");
  }
  auto nic_reading = call(http::verb::get,
                          arm_url(settings_, v->nic_ids.front(), network_api_version,
                                  "$expand=ipConfigurations%2FpublicIPAddress"),
                          std::string(), dl);
  auto nic = co_await std::move(nic_reading);
  if (!nic) {
    if (nic.error().is(errc::cloud_not_found)) co_return out;  // not made yet: no address yet
    co_return nic.error();
  }
  auto address = parse_nic_address(nic->body, settings_.public_ip);
  if (!address) co_return address.error();
  out.ip_address = std::move(*address);
  co_return out;
}

asio::awaitable<result<void>> azure_driver::destroy(const vm_ref& ref, const std::string& /*key*/,
                                                    deadline dl) {
  // A DELETE of a named resource is idempotent by itself; deleteOption takes the NIC, the
  // public IP and the OS disk with it.
  auto removing = remove(arm_url(settings_, vm_path(settings_, ref.name), compute_api_version),
                         "deleting VM " + ref.name, dl);
  co_return co_await std::move(removing);
}

asio::awaitable<result<std::vector<vm>>> azure_driver::list(const std::string& deployment,
                                                            deadline dl) {
  std::vector<vm> out;
  const std::string ours = tag_value(deployment);
  std::string url = arm_url(settings_, vms_path(settings_), compute_api_version);
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages) co_return fail(errc::cloud_transient, "the VM list never ended");
    auto listing = call(http::verb::get, url, std::string(), dl);
    auto res = co_await std::move(listing);
    if (!res) co_return res.error();  // a partial listing is no listing
    auto page = parse_vm_list(res->body);
    if (!page) co_return page.error();
    for (const auto& v : page->items) {
      const auto it = v.tags.find(label_deployment);
      if (it != v.tags.end() && it->second == ours) out.push_back(to_vm(v));
    }
    if (page->next_link.empty()) break;
    if (!same_origin(page->next_link, settings_.endpoint) || page->next_link == url) {
      co_return fail(errc::cloud_transient, "the VM list's nextLink is not one to follow");
    }
    url = with_api_version(page->next_link, compute_api_version);
  }
  co_return out;
}

// ---- capacity reservations ----------------------------------------------------------------

asio::awaitable<result<cloud_reservation>> azure_driver::reserve(const reservation_spec& spec,
                                                                 deadline dl) {
  auto body = build_reservation_body(spec, settings_);
  if (!body) co_return body.error();
  auto ensuring = ensure_group(dl);
  if (auto ready = co_await std::move(ensuring); !ready) co_return ready.error();
  auto putting =
      mutate(http::verb::put,
             arm_url(settings_, reservation_path(settings_, spec.name), compute_api_version),
             boost::json::serialize(*body),
             "capacity reservation " + spec.name + " in zone " + spec.zone, dl);
  auto made = co_await std::move(putting);
  if (!made) {
    // The group may have been deleted behind our back: make it again next time.
    if (made.error().is(errc::cloud_not_found)) group_ready_ = false;
    co_return made.error();
  }
  const reservation_ref ref{spec.name, spec.zone, ""};
  auto reading = get_reservation(ref, dl);
  co_return co_await std::move(reading);
}

asio::awaitable<result<cloud_reservation>> azure_driver::get_reservation(const reservation_ref& ref,
                                                                         deadline dl) {
  auto reading = call(http::verb::get,
                      arm_url(settings_, reservation_path(settings_, ref.name), compute_api_version,
                              "$expand=instanceView"),
                      std::string(), dl);
  auto res = co_await std::move(reading);
  if (!res) co_return res.error();
  auto r = parse_reservation(res->body);
  if (!r) co_return r.error();
  if (r->reservation.zone.empty()) r->reservation.zone = ref.zone;
  co_return std::move(r->reservation);
}

asio::awaitable<result<void>> azure_driver::release(const reservation_ref& ref,
                                                    const std::string& /*key*/, deadline dl) {
  const std::string url =
      arm_url(settings_, reservation_path(settings_, ref.name), compute_api_version);
  auto reading = call(http::verb::get, url, std::string(), dl);
  auto res = co_await std::move(reading);
  if (!res) {
    if (res.error().is(errc::cloud_not_found)) co_return result<void>{};  // gone already
    co_return res.error();
  }
  auto r = parse_reservation(res->body);
  if (!r) co_return r.error();
  if (!r->associated_vms.empty()) {
    // Azure deletes no reservation that VMs are in. They keep running: the quantity goes to
    // zero, then each VM leaves the group (the way that needs no deallocation).
    if (r->reservation.count > 0) {
      auto patching =
          mutate(http::verb::patch, url, boost::json::serialize(build_capacity_patch(0)),
                 "emptying capacity reservation " + ref.name, dl);
      if (auto emptied = co_await std::move(patching); !emptied) co_return emptied.error();
    }
    for (const auto& id : r->associated_vms) {
      if (!id.starts_with("/subscriptions/")) continue;
      auto leaving =
          mutate(http::verb::patch, arm_url(settings_, id, compute_api_version),
                 boost::json::serialize(build_leave_group_patch()),
                 "VM " + id.substr(id.rfind('/') + 1) + " leaving reservation " + ref.name, dl);
      auto left = co_await std::move(leaving);
      if (!left && !left.error().is(errc::cloud_not_found)) co_return left.error();
    }
  }
  auto removing = remove(url, "deleting capacity reservation " + ref.name, dl);
  co_return co_await std::move(removing);
}

asio::awaitable<result<std::vector<cloud_reservation>>> azure_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  std::vector<cloud_reservation> out;
  const std::string ours = tag_value(deployment);
  std::string url = arm_url(settings_, reservations_path(settings_), compute_api_version);
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages)
      co_return fail(errc::cloud_transient, "the capacity reservation list never ended");
    auto listing = call(http::verb::get, url, std::string(), dl);
    auto res = co_await std::move(listing);
    if (!res) {
      // No group yet: no reservations. Anything else: no listing at all.
      if (pages == 0 && res.error().is(errc::cloud_not_found)) co_return out;
      co_return res.error();
    }
    auto page = parse_reservation_list(res->body);
    if (!page) co_return page.error();
    for (auto& r : page->items) {
      const auto it = r.reservation.labels_.find(label_deployment);
      if (it != r.reservation.labels_.end() && it->second == ours)
        out.push_back(std::move(r.reservation));
    }
    if (page->next_link.empty()) break;
    if (!same_origin(page->next_link, settings_.endpoint) || page->next_link == url) {
      co_return fail(errc::cloud_transient, "the reservation list's nextLink is not one to follow");
    }
    url = with_api_version(page->next_link, compute_api_version);
  }
  co_return out;
}

std::string azure_driver::machine_type_for(std::string_view instance_type) const {
  auto size = settings_.vm_size_for(instance_type);
  return size ? *size : std::string(instance_type);
}

}  // namespace cloudbrain::providers::azure
