// GET /nodes, and who leads what in GET /providers.
#include "actors/api.hpp"

#include "core/log.hpp"
#include "net/problem.hpp"

#include <boost/json/serialize.hpp>

namespace cloudbrain {
namespace asio = boost::asio;
namespace json = boost::json;
namespace http = net::http;

void api::set_cluster(cluster_store& cluster, std::string node_name) {
  cluster_ = &cluster;
  node_name_ = std::move(node_name);
}

asio::awaitable<net::response> api::list_nodes(net::request_context&, const verified_token&) {
  auto nodes = co_await cluster_->nodes_json();
  if (!nodes) co_return net::problem_from_error(nodes.error());
  json::object head{{"node", node_name_}};
  // The array comes from PostgreSQL as JSON text; the answer is built around it.
  std::string body = json::serialize(head);
  body.pop_back();
  body += ",\"nodes\":" + *nodes + "}";
  co_return raw_json(http::status::ok, std::move(body));
}

asio::awaitable<void> api::add_leaders(json::array& providers) {
  if (cluster_ == nullptr) co_return;
  auto holders = co_await cluster_->role_holders();
  if (!holders) {
    log::warn("reading who leads the providers' roles failed",
              {{"error", holders.error().message()}});
  }
  for (auto& entry : providers) {
    auto& p = entry.as_object();
    const auto* name = p.if_contains("name");
    if (name == nullptr || !name->is_string()) continue;
    for (const char* role : {"reconciler", "janitor"}) {
      auto* part = p.if_contains(role);
      if (part == nullptr || !part->is_object()) continue;
      auto& o = part->as_object();
      role_holder h;  // unknown when the read failed: no leader shown
      if (holders) {
        const auto it = holders->find({std::string(name->as_string()), role});
        if (it != holders->end()) h = it->second;
      }
      o["leader"] = h.node ? json::value(*h.node) : json::value(nullptr);
      o["leader_since"] = h.since ? json::value(*h.since) : json::value(nullptr);
      o["leading"] = h.node && *h.node == node_name_;
    }
  }
}

}  // namespace cloudbrain
