#include "providers/aws/aws_driver.hpp"

#include "core/backoff.hpp"
#include "core/log.hpp"

#include <algorithm>

namespace cloudbrain::providers::aws {
namespace asio = boost::asio;
namespace http = net::http;

namespace {

// How long after making an instance or reservation a "not found" about it is EC2 not having
// caught up yet, rather than the thing being gone.
constexpr auto consistency_window = std::chrono::minutes(5);
// An image looked up by name is launched as the same AMI for this long.
constexpr auto image_cache_time = std::chrono::minutes(10);
constexpr unsigned max_pages = 10'000;

const std::vector<std::string> live_instance_states{"pending", "running", "shutting-down",
                                                    "stopping", "stopped"};
// Reservations that hold (or are about to hold) capacity.
const std::vector<std::string> held_reservation_states{"pending",   "active",  "scheduled",
                                                       "assessing", "delayed", "payment-pending"};

net::client_config client_config_for(const aws_settings& s) {
  net::client_config c;
  c.ca_file = s.ca_file;
  c.verify_tls = true;
  c.user_agent = "cloudbrain aws-driver";
  return c;
}

// EC2's error code of an answer, if it is an error document.
std::string code_of(const net::client_response& res) {
  auto e = parse_error_body(res.body);
  return e ? e->code : std::string();
}

// A secret never leaves in an error, even if the other side quoted it back.
void redact(std::string& text, const std::string& secret) {
  if (secret.size() < 4) return;
  for (auto at = text.find(secret); at != std::string::npos; at = text.find(secret, at))
    text.replace(at, secret.size(), "(redacted)");
}

}  // namespace

aws_driver::aws_driver(aws_settings settings, const driver_context& ctx,
                       std::optional<credentials> environment)
    : settings_(std::move(settings)),
      deployment_(ctx.deployment),
      http_(ctx.executor, client_config_for(settings_)),
      credentials_(settings_, http_, ctx.blocking, std::move(environment)),
      url_(settings_.endpoint + "/") {
  auto u = net::parse_url(url_);  // the settings checked it
  host_ = u ? net::host_header(*u) : std::string();
}

boost::json::object aws_driver::details() const {
  const auto& c = credentials_.stats();
  return {{"region", settings_.region},          {"requests", calls_.requests},
          {"retried", calls_.retried},           {"auth_retries", calls_.auth_retries},
          {"credentials", credentials_.kind()},  {"credential_fetches", c.fetches},
          {"credential_failures", c.failures},   {"consistency_waits", consistency_waits_},
          {"terminate_waits", terminate_waits_}, {"images_resolved", images_resolved_}};
}

error aws_driver::classify(const net::client_response& res, const credentials* used) const {
  std::optional<system_clock::time_point> server_time;
  if (const auto it = res.headers.find(http::field::date); it != res.headers.end())
    server_time = parse_http_date(it->value());
  error e = error_from_response(res.status, res.body, server_time);
  if (used) {
    redact(e.detail, used->secret_access_key);
    redact(e.detail, used->session_token);
  }
  return e;
}

asio::awaitable<result<std::string>> aws_driver::call(query_params params, deadline dl) {
  const std::string body = form_body(params);
  std::optional<credentials> used;  // what the last try was signed with
  cloud_request_hooks hooks;
  hooks.pace = [this] { return pace(); };
  hooks.make = [&](deadline d) -> asio::awaitable<result<net::client_request>> {
    auto getting = credentials_.get(d);
    auto got = co_await std::move(getting);
    if (!got) co_return got.error();
    used = std::move(*got);
    sigv4_request signing{
        "POST",
        "/",
        "",
        {{"Host", host_}, {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
        body};
    auto signature = sign(signing, *used, settings_.region, "ec2", system_clock::now());
    if (!signature) co_return signature.error();
    net::client_request req;
    req.method = http::verb::post;
    req.url = url_;
    req.headers = std::move(signing.headers);
    req.body = std::move(signing.body);
    co_return req;
  };
  hooks.classify = [&](const net::client_response& res) {
    return classify(res, used ? &*used : nullptr);
  };
  // Refused credentials are fetched again once: a rotated file, an expired session token, a
  // role's new set. RequestExpired is what EC2 says to an expired session token (and to a
  // skewed clock, which a second try reports as such).
  hooks.on_unauthorized = [&] {
    if (used) credentials_.invalidate(used->access_key_id);
  };
  hooks.stale_credentials = [](const net::client_response& res) {
    if (res.status != 400 && res.status != 403) return false;
    const auto code = code_of(res);
    return code == "RequestExpired" || code == "ExpiredToken" || code == "SignatureDoesNotMatch";
  };
  const cloud_request_policy policy;
  auto sending = send_cloud_request(http_, hooks, policy, dl, calls_, rng_);
  auto res = co_await std::move(sending);
  if (!res) co_return res.error();
  co_return std::move(res->body);
}

// ---- eventual consistency --------------------------------------------------------------

bool aws_driver::made_recently(const std::string& id) const {
  const auto it = made_.find(id);
  return it != made_.end() && steady_clock::now() - it->second < consistency_window;
}

void aws_driver::remember_made(const std::string& id) {
  const auto now = steady_clock::now();
  std::erase_if(made_, [&](const auto& m) { return now - m.second >= consistency_window; });
  made_[id] = now;
}

asio::awaitable<bool> aws_driver::wait_for_consistency(unsigned attempt, deadline dl) {
  const backoff_policy backoff{std::chrono::milliseconds(200), std::chrono::milliseconds(2000),
                               std::chrono::milliseconds(100)};
  const auto pause = backoff.delay(attempt, rng_);
  if (steady_clock::now() + pause >= dl) co_return false;
  ++consistency_waits_;
  co_await sleep_for(pause);
  co_return true;
}

// ---- instances -------------------------------------------------------------------------

asio::awaitable<result<std::vector<ec2_instance>>> aws_driver::describe_instances(
    std::vector<ec2_filter> filters, deadline dl) {
  std::vector<ec2_instance> out;
  std::string token;
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages) co_return fail(errc::cloud_transient, "DescribeInstances never ended");
    auto listing = call(describe_instances_params({}, filters, token), dl);
    auto body = co_await std::move(listing);
    if (!body) co_return body.error();  // a partial listing is no listing
    auto page = parse_describe_instances(*body, settings_.public_ip);
    if (!page) co_return page.error();
    for (auto& i : page->instances) out.push_back(std::move(i));
    if (page->next_token.empty()) break;
    if (page->next_token == token)
      co_return fail(errc::cloud_transient, "DescribeInstances repeated a page");
    token = std::move(page->next_token);
  }
  co_return out;
}

asio::awaitable<result<ec2_instance>> aws_driver::instance_by_id(std::string id, deadline dl) {
  for (unsigned attempt = 0;; ++attempt) {
    auto reading = call(describe_instances_params({id}, {}), dl);
    auto body = co_await std::move(reading);
    if (body) {
      auto page = parse_describe_instances(*body, settings_.public_ip);
      if (!page) co_return page.error();
      for (auto& i : page->instances) {
        if (i.v.upstream_id == id) co_return std::move(i);
      }
      co_return fail(errc::cloud_transient, "DescribeInstances of " + id + " left it out");
    }
    if (!body.error().is(errc::cloud_not_found) || !made_recently(id)) co_return body.error();
    auto waiting = wait_for_consistency(attempt, dl);
    if (!co_await std::move(waiting)) {
      co_return fail(errc::cloud_transient, "instance " + id +
                                                " made moments ago is not known to EC2 yet "
                                                "(EC2 is eventually consistent)");
    }
  }
}

asio::awaitable<result<std::vector<ec2_instance>>> aws_driver::instances_named(std::string name,
                                                                               std::string zone,
                                                                               deadline dl) {
  std::vector<ec2_filter> filters{{"tag:" + std::string(tag_name), {name}},
                                  {"instance-state-name", live_instance_states}};
  if (!zone.empty()) filters.push_back({"availability-zone", {zone}});
  auto listing = describe_instances(std::move(filters), dl);
  co_return co_await std::move(listing);
}

asio::awaitable<result<std::string>> aws_driver::image_id_for(std::string image, deadline dl) {
  if (is_ami_id(image)) co_return image;
  if (const auto it = images_.find(image);
      it != images_.end() && steady_clock::now() < it->second.until) {
    co_return it->second.id;
  }
  const std::string what = "lookup of image " + image;  // outlives the flight, which names it
  auto& lookups = image_lookups_[image];
  auto looking = lookups.run([this, image, dl] { return look_up_image(image, dl); }, dl, what);
  co_return co_await std::move(looking);
}

asio::awaitable<result<std::string>> aws_driver::look_up_image(std::string image, deadline dl) {
  std::vector<ec2_image> found;
  std::string token;
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages) co_return fail(errc::cloud_transient, "DescribeImages never ended");
    auto listing = call(describe_images_params(image, settings_.image_owners, token), dl);
    auto body = co_await std::move(listing);
    if (!body) co_return body.error();
    auto page = parse_describe_images(*body);
    if (!page) co_return page.error();
    for (auto& i : page->images) found.push_back(std::move(i));
    if (page->next_token.empty() || page->next_token == token) break;
    token = std::move(page->next_token);
  }
  const auto* newest = newest_image(found);
  if (!newest) {
    std::string owners;
    for (const auto& o : settings_.image_owners) owners += (owners.empty() ? "" : ", ") + o;
    co_return fail(errc::cloud_permanent, "no available image named '" + image + "' owned by " +
                                              owners + " (DescribeImages)");
  }
  ++images_resolved_;
  images_[image] = {newest->image_id, steady_clock::now() + image_cache_time};
  log::info("image resolved", {{"provider", settings_.name},
                               {"image", image},
                               {"ami", newest->image_id},
                               {"created", newest->creation_date}});
  co_return newest->image_id;
}

asio::awaitable<result<vm>> aws_driver::create(const instance_spec& spec, deadline dl) {
  auto resolving = image_id_for(spec.image, dl);
  auto image = co_await std::move(resolving);
  if (!image) co_return image.error();
  std::string reservation_id;
  if (!spec.reservation_upstream.empty()) {
    auto finding = reservation_id_for(spec.reservation_upstream, spec.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    reservation_id = std::move(*found);
  }
  auto params = run_instances_params(spec, settings_, *image, reservation_id);
  if (!params) co_return params.error();
  auto launching = call(*params, dl);
  auto body = co_await std::move(launching);
  if (!body) co_return body.error();
  auto launched = parse_run_instances(*body, settings_.public_ip);
  if (!launched) co_return launched.error();
  remember_made(launched->v.upstream_id);
  co_return std::move(launched->v);
}

asio::awaitable<result<vm>> aws_driver::get(const vm_ref& ref, deadline dl) {
  if (!ref.upstream_id.empty()) {
    auto reading = instance_by_id(ref.upstream_id, dl);
    auto got = co_await std::move(reading);
    if (!got) co_return got.error();
    co_return std::move(got->v);
  }
  auto finding = instances_named(ref.name, ref.zone, dl);
  auto found = co_await std::move(finding);
  if (!found) co_return found.error();
  if (found->empty()) {
    co_return fail(errc::cloud_not_found, "no live instance named " + ref.name + " in " +
                                              (ref.zone.empty() ? settings_.region : ref.zone));
  }
  // Running or on its way there before one on its way out.
  std::stable_sort(found->begin(), found->end(), [](const auto& a, const auto& b) {
    return (a.v.status == vm_status::running || a.v.status == vm_status::provisioning) &&
           !(b.v.status == vm_status::running || b.v.status == vm_status::provisioning);
  });
  co_return std::move(found->front().v);
}

asio::awaitable<result<void>> aws_driver::destroy(const vm_ref& ref, const std::string&,
                                                  deadline dl) {
  // TerminateInstances needs no idempotency token: terminating twice ends the same way.
  std::vector<std::string> ids;
  if (!ref.upstream_id.empty()) {
    ids.push_back(ref.upstream_id);
  } else {
    auto finding = instances_named(ref.name, ref.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    for (const auto& i : *found) ids.push_back(i.v.upstream_id);
    if (ids.empty()) co_return result<void>{};  // nothing of that name: gone already
  }
  for (unsigned attempt = 0;; ++attempt) {
    auto terminating = call(terminate_instances_params(ids), dl);
    auto body = co_await std::move(terminating);
    if (body) {
      auto changes = parse_terminate_instances(*body);
      if (!changes) co_return changes.error();
      break;
    }
    if (!body.error().is(errc::cloud_not_found)) co_return body.error();
    // Unknown to EC2: long gone, or made a moment ago and not known everywhere yet.
    if (std::none_of(ids.begin(), ids.end(), [&](const auto& id) { return made_recently(id); }))
      co_return result<void>{};
    auto waiting = wait_for_consistency(attempt, dl);
    if (!co_await std::move(waiting)) {
      co_return fail(errc::cloud_transient,
                     "instance made moments ago is not known to EC2 yet; not terminated");
    }
  }
  // Returns once EC2 says terminated (shutting-down takes a while).
  std::chrono::milliseconds poll{200};
  for (const auto& id : ids) {
    for (;;) {
      auto reading = instance_by_id(id, dl);
      auto got = co_await std::move(reading);
      if (!got) {
        if (got.error().is(errc::cloud_not_found)) break;  // described no more: gone
        co_return got.error();
      }
      if (got->state == "terminated") break;
      if (steady_clock::now() + poll >= dl) {
        co_return fail(errc::timeout, "instance " + id + " still " + got->state +
                                          " when the time to terminate it ran out");
      }
      ++terminate_waits_;
      co_await sleep_for(poll);
      poll = std::min(poll * 2, std::chrono::milliseconds(2000));
    }
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<vm>>> aws_driver::list(const std::string& deployment,
                                                          deadline dl) {
  auto listing = describe_instances({{"tag:" + std::string(label_deployment), {deployment}},
                                     {"instance-state-name", live_instance_states}},
                                    dl);
  auto found = co_await std::move(listing);
  if (!found) co_return found.error();
  std::vector<vm> out;
  out.reserve(found->size());
  for (auto& i : *found) out.push_back(std::move(i.v));
  co_return out;
}

// ---- capacity reservations -------------------------------------------------------------

asio::awaitable<result<std::vector<ec2_reservation>>> aws_driver::describe_reservations(
    std::vector<ec2_filter> filters, deadline dl) {
  std::vector<ec2_reservation> out;
  std::string token;
  for (unsigned pages = 0;; ++pages) {
    if (pages >= max_pages)
      co_return fail(errc::cloud_transient, "DescribeCapacityReservations never ended");
    auto listing = call(describe_capacity_reservations_params({}, filters, token), dl);
    auto body = co_await std::move(listing);
    if (!body) co_return body.error();  // a partial listing is no listing
    auto page = parse_describe_capacity_reservations(*body);
    if (!page) co_return page.error();
    for (auto& r : page->reservations) out.push_back(std::move(r));
    if (page->next_token.empty()) break;
    if (page->next_token == token)
      co_return fail(errc::cloud_transient, "DescribeCapacityReservations repeated a page");
    token = std::move(page->next_token);
  }
  co_return out;
}

asio::awaitable<result<ec2_reservation>> aws_driver::reservation_by_id(std::string id,
                                                                       deadline dl) {
  for (unsigned attempt = 0;; ++attempt) {
    auto reading = call(describe_capacity_reservations_params({id}, {}), dl);
    auto body = co_await std::move(reading);
    if (body) {
      auto page = parse_describe_capacity_reservations(*body);
      if (!page) co_return page.error();
      for (auto& r : page->reservations) {
        if (r.r.upstream_id == id) co_return std::move(r);
      }
      co_return fail(errc::cloud_transient,
                     "DescribeCapacityReservations of " + id + " left it out");
    }
    if (!body.error().is(errc::cloud_not_found) || !made_recently(id)) co_return body.error();
    auto waiting = wait_for_consistency(attempt, dl);
    if (!co_await std::move(waiting)) {
      co_return fail(errc::cloud_transient,
                     "capacity reservation " + id + " made moments ago is not known to EC2 yet");
    }
  }
}

asio::awaitable<result<std::vector<ec2_reservation>>> aws_driver::reservations_named(
    std::string name, std::string zone, deadline dl) {
  std::vector<ec2_filter> filters{{"tag:" + std::string(tag_name), {name}},
                                  {"state", held_reservation_states}};
  if (!zone.empty()) filters.push_back({"availability-zone", {zone}});
  auto listing = describe_reservations(std::move(filters), dl);
  co_return co_await std::move(listing);
}

asio::awaitable<result<std::string>> aws_driver::reservation_id_for(std::string name,
                                                                    std::string zone, deadline dl) {
  const std::string key = name + "/" + zone;
  if (const auto it = reservation_ids_.find(key); it != reservation_ids_.end())
    co_return it->second;
  auto finding = reservations_named(name, zone, dl);
  auto found = co_await std::move(finding);
  if (!found) co_return found.error();
  for (const auto& r : *found) {
    if (r.state == "active") {
      reservation_ids_[key] = r.r.upstream_id;
      co_return r.r.upstream_id;
    }
  }
  co_return fail(errc::cloud_permanent,
                 "no active capacity reservation " + name + " in " + zone + " at EC2");
}

asio::awaitable<result<cloud_reservation>> aws_driver::reserve(const reservation_spec& spec,
                                                               deadline dl) {
  auto params = create_capacity_reservation_params(spec, settings_);
  if (!params) co_return params.error();
  auto creating = call(*params, dl);
  auto body = co_await std::move(creating);
  if (!body) co_return body.error();
  auto made = parse_create_capacity_reservation(*body);
  if (!made) co_return made.error();
  remember_made(made->r.upstream_id);
  if (made->r.zone.empty()) made->r.zone = spec.zone;
  co_return std::move(made->r);
}

asio::awaitable<result<cloud_reservation>> aws_driver::get_reservation(const reservation_ref& ref,
                                                                       deadline dl) {
  if (!ref.upstream_id.empty()) {
    auto reading = reservation_by_id(ref.upstream_id, dl);
    auto got = co_await std::move(reading);
    if (!got) co_return got.error();
    if (reservation_over(got->state)) {
      co_return fail(errc::cloud_not_found,
                     "capacity reservation " + ref.upstream_id + " is " + got->state);
    }
    co_return std::move(got->r);
  }
  auto finding = reservations_named(ref.name, ref.zone, dl);
  auto found = co_await std::move(finding);
  if (!found) co_return found.error();
  if (found->empty()) {
    co_return fail(errc::cloud_not_found,
                   "no capacity reservation named " + ref.name + " held in " + ref.zone);
  }
  co_return std::move(found->front().r);
}

asio::awaitable<result<void>> aws_driver::release(const reservation_ref& ref, const std::string&,
                                                  deadline dl) {
  // CancelCapacityReservation needs no idempotency token: cancelling twice ends the same way.
  std::vector<std::string> ids;
  if (!ref.upstream_id.empty()) {
    auto reading = reservation_by_id(ref.upstream_id, dl);
    auto got = co_await std::move(reading);
    if (!got) {
      if (got.error().is(errc::cloud_not_found)) co_return result<void>{};  // gone already
      co_return got.error();
    }
    if (!reservation_over(got->state)) ids.push_back(ref.upstream_id);
  } else {
    auto finding = reservations_named(ref.name, ref.zone, dl);
    auto found = co_await std::move(finding);
    if (!found) co_return found.error();
    for (const auto& r : *found) ids.push_back(r.r.upstream_id);
  }
  for (const auto& id : ids) {
    for (unsigned attempt = 0;; ++attempt) {
      auto cancelling = call(cancel_capacity_reservation_params(id), dl);
      auto body = co_await std::move(cancelling);
      if (body) {
        auto done = parse_cancel_capacity_reservation(*body);
        if (!done) co_return done.error();
        if (!*done) co_return fail(errc::cloud_transient, "EC2 did not cancel " + id);
        reservation_ids_.erase(ref.name + "/" + ref.zone);
        break;
      }
      // Not in a state that holds capacity any more (cancelled meanwhile, expired, failed).
      if (has_code(body.error(), "IncorrectState")) break;
      if (!body.error().is(errc::cloud_not_found)) co_return body.error();
      if (!made_recently(id)) break;  // long gone
      auto waiting = wait_for_consistency(attempt, dl);
      if (!co_await std::move(waiting)) {
        co_return fail(errc::cloud_transient,
                       "capacity reservation " + id + " made moments ago is not known to EC2 yet");
      }
    }
  }
  co_return result<void>{};
}

asio::awaitable<result<std::vector<cloud_reservation>>> aws_driver::list_reservations(
    const std::string& deployment, deadline dl) {
  auto listing = describe_reservations(
      {{"tag:" + std::string(label_deployment), {deployment}}, {"state", held_reservation_states}},
      dl);
  auto found = co_await std::move(listing);
  if (!found) co_return found.error();
  std::vector<cloud_reservation> out;
  out.reserve(found->size());
  for (auto& r : *found) out.push_back(std::move(r.r));
  co_return out;
}

std::string aws_driver::machine_type_for(std::string_view instance_type) const {
  auto t = settings_.instance_type_for(instance_type);
  return t ? *t : std::string(instance_type);
}

}  // namespace cloudbrain::providers::aws
