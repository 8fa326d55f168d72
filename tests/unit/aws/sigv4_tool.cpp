// Signs requests given as JSON lines on stdin with providers/aws/sigv4 and prints, per line, what
// signing produced. test_botocore_signer.py drives it with generated requests and compares every
// answer with botocore's own SigV4 signer.
//
// In:  {"method","path","query","headers":[[name,value],...],"body","access_key","secret",
//       "token","region","service","time":"20240101T000000Z"}
// Out: {"canonical_request","string_to_sign","signed_headers","authorization"} or {"error"}
#include "providers/aws/sigv4.hpp"

#include <boost/json.hpp>

#include <iostream>
#include <string>

namespace json = boost::json;
using namespace cloudbrain;
using namespace cloudbrain::providers::aws;

namespace {

std::string str(const json::object& o, std::string_view key) {
  const auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

json::object sign_one(const json::object& in) {
  sigv4_request req;
  req.method = str(in, "method");
  req.path = str(in, "path");
  req.query = str(in, "query");
  req.body = str(in, "body");
  if (const auto* hs = in.if_contains("headers"); hs && hs->is_array()) {
    for (const auto& h : hs->get_array()) {
      const auto& pair = h.as_array();
      req.headers.emplace_back(std::string(pair.at(0).as_string()),
                               std::string(pair.at(1).as_string()));
    }
  }
  credentials c;
  c.access_key_id = str(in, "access_key");
  c.secret_access_key = str(in, "secret");
  c.session_token = str(in, "token");
  const auto when = parse_amz_date(str(in, "time"));
  if (!when) return {{"error", "bad time"}};
  auto sig = sign(req, c, str(in, "region"), str(in, "service"), *when);
  if (!sig) return {{"error", sig.error().message()}};
  return {{"canonical_request", sig->canonical_request},
          {"string_to_sign", sig->string_to_sign},
          {"signed_headers", sig->signed_headers},
          {"authorization", sig->authorization}};
}

}  // namespace

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    json::object out;
    if (ec || !v.is_object()) {
      out = {{"error", "not a JSON object"}};
    } else {
      try {
        out = sign_one(v.as_object());
      } catch (const std::exception& e) {
        out = {{"error", e.what()}};
      }
    }
    std::cout << json::serialize(out) << "\n";
  }
  return 0;
}
