#include "net/server.hpp"

#include <boost/beast/http/parser.hpp>

#include <gtest/gtest.h>

#include <string>

namespace cloudbrain::net {
namespace {

// Parses a request head as the server does, then checks it.
std::optional<response> check(const std::string& head) {
  http::request_parser<http::string_body> parser;
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(head), ec);
  EXPECT_TRUE(!ec || ec == http::error::need_more) << ec.message() << " for " << head;
  EXPECT_TRUE(parser.is_header_done()) << head;
  return check_request_head(parser.get());
}

TEST(RequestHead, OrdinaryHeadsPass) {
  EXPECT_FALSE(check("GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_FALSE(check("POST /instances HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n"));
  EXPECT_FALSE(check("POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  EXPECT_FALSE(check("POST /instances HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked \r\n\r\n"));
  // HTTP/1.0 needs no Host.
  EXPECT_FALSE(check("GET /livez HTTP/1.0\r\n\r\n"));
}

TEST(RequestHead, AmbiguousFramingIsRefusedNamingWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
       "more than one Content-Length"},
      {"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "must be exactly"},
      {"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "HTTP/1.0"},
      {"GET / HTTP/1.1\r\n\r\n", "needs a Host"},
      {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host"},
  };
  for (const auto& [head, why] : cases) {
    SCOPED_TRACE(head);
    auto refused = check(head);
    ASSERT_TRUE(refused);
    EXPECT_EQ(refused->result(), http::status::bad_request);
    EXPECT_EQ((*refused)[http::field::content_type], "application/problem+json");
    EXPECT_NE(refused->body().find(why), std::string::npos) << refused->body();
  }
}

TEST(RequestHead, BeastRefusesSomeShapesItself) {
  // Refused by the parser before any check runs; the server answers its error with 400 too.
  for (const char* head :
       {"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
        "chunked\r\n\r\n"}) {
    http::request_parser<http::string_body> parser;
    boost::beast::error_code ec;
    parser.put(boost::asio::buffer(std::string(head)), ec);
    EXPECT_EQ(ec, http::error::bad_transfer_encoding) << head;
  }
  // And were a parser to let them through, the check refuses them.
  {
    request twice{http::verb::post, "/", 11};
    twice.set(http::field::host, "x");
    twice.insert(http::field::transfer_encoding, "chunked");
    twice.insert(http::field::transfer_encoding, "chunked");
    auto refused = check_request_head(twice);
    ASSERT_TRUE(refused);
    EXPECT_NE(refused->body().find("more than one Transfer-Encoding"), std::string::npos);
  }
  request head{http::verb::post, "/", 11};
  head.set(http::field::host, "x");
  head.set(http::field::content_length, "3");
  head.set(http::field::transfer_encoding, "chunked");
  auto refused = check_request_head(head);
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->body().find("both Content-Length and Transfer-Encoding"), std::string::npos);
}

}  // namespace
}  // namespace cloudbrain::net
