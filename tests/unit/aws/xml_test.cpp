#include "providers/aws/xml.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers::aws {
namespace {

std::string refusal(std::string_view doc) {
  auto r = parse_xml(doc);
  EXPECT_FALSE(r) << "accepted: " << doc;
  if (r) return {};
  EXPECT_TRUE(r.error().is(errc::invalid_argument));
  return r.error().detail;
}

TEST(xml, namespaces_are_resolved_and_prefixes_dropped) {
  auto doc = parse_xml(R"(<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment before the root -->
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
    <requestId>8f7724cf-496f-496e-8fe3-example</requestId>
    <x:extra xmlns:x="urn:other" x:flag="1" plain='two'>text</x:extra>
    <reservationSet/>
</DescribeInstancesResponse>
)");
  ASSERT_TRUE(doc) << doc.error().detail;
  EXPECT_EQ(doc->name, "DescribeInstancesResponse");
  EXPECT_EQ(doc->namespace_uri, "http://ec2.amazonaws.com/doc/2016-11-15/");
  EXPECT_EQ(doc->child_text("requestId"), "8f7724cf-496f-496e-8fe3-example");
  const auto* extra = doc->child("extra");
  ASSERT_NE(extra, nullptr);
  EXPECT_EQ(extra->namespace_uri, "urn:other");
  EXPECT_EQ(extra->attributes,
            (std::vector<std::pair<std::string, std::string>>{{"flag", "1"}, {"plain", "two"}}));
  ASSERT_NE(doc->child("reservationSet"), nullptr);
  EXPECT_TRUE(doc->child("reservationSet")->children.empty());
  EXPECT_EQ(doc->child("missing"), nullptr);
  EXPECT_EQ(doc->child_text("missing"), "");
  // The default namespace reaches the children.
  EXPECT_EQ(doc->child("requestId")->namespace_uri, doc->namespace_uri);
}

TEST(xml, entities_character_references_and_cdata) {
  auto doc = parse_xml(
      "<m>a &lt;b&gt; &amp; &quot;c&quot; &apos;d&apos; &#65;&#x42;&#x20AC;&#x1F600;"
      "<![CDATA[<raw & kept>]]></m>");
  ASSERT_TRUE(doc) << doc.error().detail;
  EXPECT_EQ(doc->text, "a <b> & \"c\" 'd' AB\xE2\x82\xAC\xF0\x9F\x98\x80<raw & kept>");
}

TEST(xml, find_follows_a_path) {
  auto doc = parse_xml("<a><b><c>1</c></b><b><c>2</c></b></a>");
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->find_text("b/c"), "1");
  EXPECT_EQ(doc->find("b/x"), nullptr);
  EXPECT_EQ(doc->find_text("b/c/d"), "");
}

TEST(xml, malformed_documents_are_refused_with_where) {
  EXPECT_NE(refusal("").find("empty document"), std::string::npos);
  EXPECT_NE(refusal("<a>").find("never closed"), std::string::npos);
  EXPECT_NE(refusal("<a></b>").find("</b> closes <a>"), std::string::npos);
  EXPECT_NE(refusal("<a>\n<b>\n</a>").find("line 3"), std::string::npos);
  EXPECT_NE(refusal("<a/><b/>").find("after the root"), std::string::npos);
  EXPECT_NE(refusal("text<a/>").find("before the root"), std::string::npos);
  EXPECT_NE(refusal("<a>&nbsp;</a>").find("unknown entity '&nbsp;'"), std::string::npos);
  EXPECT_NE(refusal("<a>&#0;</a>").find("does not allow"), std::string::npos);
  EXPECT_NE(refusal("<a>&#x110000;</a>").find("out of range"), std::string::npos);
  EXPECT_NE(refusal("<a>&amp</a>").find("reference"), std::string::npos);
  EXPECT_NE(refusal("<p:a/>").find("prefix 'p' is not declared"), std::string::npos);
  EXPECT_NE(refusal("<a x=1/>").find("quoted"), std::string::npos);
  EXPECT_NE(refusal("<a x='1' x='2'/>").find("given twice"), std::string::npos);
  EXPECT_NE(refusal("<a x='<'/>").find("'<' in an attribute"), std::string::npos);
  EXPECT_NE(refusal("<a><!-- open </a>").find("unterminated comment"), std::string::npos);
  EXPECT_NE(refusal("<a><![CDATA[x</a>").find("CDATA"), std::string::npos);
  EXPECT_NE(refusal("<a x='1'y='2'/>").find("whitespace expected"), std::string::npos);
  EXPECT_NE(refusal("<1a/>").find("name was expected"), std::string::npos);
  EXPECT_NE(refusal("<html><body>502 Bad Gateway</body>").find("never closed"), std::string::npos);
}

TEST(xml, no_doctype_so_no_entity_expansion) {
  const auto detail = refusal(
      R"(<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]>
<lolz>&lol2;</lolz>)");
  EXPECT_NE(detail.find("DOCTYPE"), std::string::npos);
  EXPECT_NE(refusal("<a><!ENTITY x 'y'></a>").find("declaration"), std::string::npos);
}

TEST(xml, depth_and_size_are_bounded) {
  std::string deep;
  for (int i = 0; i < 100; ++i) deep += "<a>";
  for (int i = 0; i < 100; ++i) deep += "</a>";
  EXPECT_NE(refusal(deep).find("nested deeper"), std::string::npos);
  xml_limits small;
  small.max_bytes = 10;
  auto r = parse_xml("<abcdefghijkl/>", small);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().detail.find("larger than"), std::string::npos);
}

TEST(xml, escape_round_trips) {
  const std::string text = "<a href=\"x\">&'";
  auto doc = parse_xml("<t v=\"" + xml_escape(text) + "\">" + xml_escape(text) + "</t>");
  ASSERT_TRUE(doc);
  EXPECT_EQ(doc->text, text);
  EXPECT_EQ(doc->attributes.front().second, text);
}

}  // namespace
}  // namespace cloudbrain::providers::aws
