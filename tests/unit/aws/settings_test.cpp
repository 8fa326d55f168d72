#include "providers/aws/settings.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers::aws {
namespace {

provider_section section(std::map<std::string, std::string> settings,
                         std::vector<std::string> zones = {"eu-west-1a", "eu-west-1b"}) {
  provider_section s;
  s.name = "aws-eu";
  s.type = "aws";
  s.zones = std::move(zones);
  s.settings = std::move(settings);
  return s;
}

std::string refused(const provider_section& s) {
  auto r = aws_settings::from_section(s);
  EXPECT_FALSE(r) << "accepted";
  if (r) return {};
  EXPECT_TRUE(r.error().is(errc::bad_config));
  EXPECT_NE(r.error().detail.find("[provider.aws-eu]"), std::string::npos) << r.error().detail;
  return r.error().detail;
}

TEST(aws_settings, defaults) {
  auto a = aws_settings::from_section(section({{"region", "eu-west-1"}}));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->region, "eu-west-1");
  EXPECT_EQ(a->zones, (std::vector<std::string>{"eu-west-1a", "eu-west-1b"}));
  EXPECT_EQ(a->endpoint, "https://ec2.eu-west-1.amazonaws.com");
  EXPECT_EQ(a->credentials, "");
  EXPECT_EQ(a->profile, "default");
  EXPECT_EQ(a->standard_instance_type, "m5.large");
  EXPECT_EQ(a->premium_instance_type, "m5.2xlarge");
  EXPECT_TRUE(a->subnets.empty());
  EXPECT_TRUE(a->security_groups.empty());
  EXPECT_EQ(a->image_owners, std::vector<std::string>{"self"});
  EXPECT_EQ(a->ssh_user, "cloudbrain");
  EXPECT_TRUE(a->public_ip);
  EXPECT_EQ(a->metadata_endpoint, "http://169.254.169.254");
  EXPECT_EQ(a->instance_type_for("").value(), "m5.large");
  EXPECT_EQ(a->instance_type_for("standard").value(), "m5.large");
  EXPECT_EQ(a->instance_type_for("premium").value(), "m5.2xlarge");
  EXPECT_TRUE(a->instance_type_for("huge").error().is(errc::cloud_permanent));
}

TEST(aws_settings, the_example_of_the_contract) {
  // [provider.aws-eu] of API.md, key for key.
  auto s = section({{"region", "eu-west-1"},
                    {"credentials", "/etc/cloudbrain/aws-credentials"},
                    {"profile", "default"},
                    {"standard-instance-type", "m5.large"},
                    {"premium-instance-type", "m5.2xlarge"},
                    {"subnets", "eu-west-1a=subnet-0aaa eu-west-1b=subnet-0bbb"},
                    {"security-groups", "sg-0123"},
                    {"image-owners", "self amazon"},
                    {"ssh-user", "ubuntu"}},
                   {"eu-west-1a", "eu-west-1b", "eu-west-1c"});
  s.endpoint = "https://ec2.eu-west-1.amazonaws.com";
  auto a = aws_settings::from_section(s);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->credentials, "/etc/cloudbrain/aws-credentials");
  EXPECT_EQ(a->subnets, (std::map<std::string, std::string>{{"eu-west-1a", "subnet-0aaa"},
                                                            {"eu-west-1b", "subnet-0bbb"}}));
  EXPECT_EQ(a->security_groups, std::vector<std::string>{"sg-0123"});
  EXPECT_EQ(a->image_owners, (std::vector<std::string>{"self", "amazon"}));
  EXPECT_EQ(a->ssh_user, "ubuntu");
  EXPECT_EQ(a->endpoint, "https://ec2.eu-west-1.amazonaws.com");
}

TEST(aws_settings, every_other_key) {
  auto s = section({{"region", "us-gov-west-1"},
                    {"image-owners", "123456789012 aws-marketplace"},
                    {"security-groups", "sg-0123456789abcdef0 sg-1 sg-1"},
                    {"public-ip", "false"},
                    {"ca-file", "/etc/ssl/private-ca.pem"},
                    {"metadata-endpoint", "http://127.0.0.1:9999/"}},
                   {"us-gov-west-1a", "us-gov-west-1-lax-1a"});
  s.endpoint = "http://127.0.0.1:8443/";
  auto a = aws_settings::from_section(s);
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->image_owners, (std::vector<std::string>{"123456789012", "aws-marketplace"}));
  EXPECT_EQ(a->security_groups, (std::vector<std::string>{"sg-0123456789abcdef0", "sg-1"}));
  EXPECT_FALSE(a->public_ip);
  EXPECT_EQ(a->ca_file, "/etc/ssl/private-ca.pem");
  EXPECT_EQ(a->metadata_endpoint, "http://127.0.0.1:9999");
  EXPECT_EQ(a->endpoint, "http://127.0.0.1:8443");
}

TEST(aws_settings, china_regions_have_their_own_domain) {
  EXPECT_EQ(default_endpoint_for("cn-north-1"), "https://ec2.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(default_endpoint_for("ap-southeast-4"), "https://ec2.ap-southeast-4.amazonaws.com");
}

TEST(aws_settings, region_is_required_and_checked) {
  EXPECT_NE(refused(section({})).find("'region' is required"), std::string::npos);
  for (const char* bad : {"eu-west", "EU-WEST-1", "eu_west_1", "e-west-1", "eu-west-1a", ""}) {
    SCOPED_TRACE(bad);
    EXPECT_NE(refused(section({{"region", bad}})).find("'region'"), std::string::npos);
  }
  EXPECT_TRUE(valid_region("us-gov-east-1"));
  EXPECT_TRUE(valid_region("il-central-1"));
}

TEST(aws_settings, zones_belong_to_the_region) {
  const auto detail = refused(section({{"region", "eu-west-1"}}, {"eu-west-1a", "us-east-1a"}));
  EXPECT_NE(detail.find("'zones'"), std::string::npos);
  EXPECT_NE(detail.find("us-east-1a"), std::string::npos);
  refused(section({{"region", "eu-west-1"}}, {"eu-west-1"}));
  refused(section({{"region", "eu-west-1"}}, {"eu-west-11"}));
  EXPECT_NE(refused(section({{"region", "eu-west-1"}}, {})).find("'zones' is required"),
            std::string::npos);
}

TEST(aws_settings, bad_values_are_named) {
  struct bad_case {
    const char* key;
    const char* value;
  };
  for (const auto& [key, value] : std::initializer_list<bad_case>{
           {"standard-instance-type", "m5"},
           {"premium-instance-type", "M5.large"},
           {"premium-instance-type", "m5.large "},
           {"subnets", "eu-west-1a"},
           {"subnets", "eu-west-1c=subnet-0aaa"},
           {"subnets", "eu-west-1a=subnet-xyz"},
           {"subnets", "eu-west-1a=subnet-0aaa eu-west-1a=subnet-0bbb"},
           {"security-groups", "default"},
           {"security-groups", "sg-"},
           {"image-owners", "everyone"},
           {"image-owners", "12345"},
           {"image-owners", " "},
           {"ssh-user", "Root User"},
           {"public-ip", "maybe"},
           {"metadata-endpoint", "169.254.169.254"},
           {"metadata-endpoint", "http://169.254.169.254/latest"},
           {"credentials", ""},
           {"profile", "a b"},
       }) {
    SCOPED_TRACE(std::string(key) + " = " + value);
    std::map<std::string, std::string> settings{{"region", "eu-west-1"}, {"credentials", "/c"}};
    settings[key] = value;
    const auto detail = refused(section(settings));
    EXPECT_NE(detail.find(std::string("'") + key + "'"), std::string::npos) << detail;
  }
}

TEST(aws_settings, unknown_key_lists_the_known_ones) {
  const auto detail = refused(section({{"region", "eu-west-1"}, {"project", "x"}}));
  EXPECT_NE(detail.find("unknown key 'project'"), std::string::npos) << detail;
  EXPECT_NE(detail.find("image-owners"), std::string::npos) << detail;
}

TEST(aws_settings, profile_needs_the_credentials_file) {
  const auto detail = refused(section({{"region", "eu-west-1"}, {"profile", "ci"}}));
  EXPECT_NE(detail.find("'profile'"), std::string::npos) << detail;
  EXPECT_NE(detail.find("'credentials'"), std::string::npos) << detail;
}

TEST(aws_settings, endpoint_is_a_url_without_a_path) {
  auto s = section({{"region", "eu-west-1"}});
  s.endpoint = "ec2.eu-west-1.amazonaws.com";
  EXPECT_NE(refused(s).find("'endpoint'"), std::string::npos);
  s.endpoint = "https://ec2.eu-west-1.amazonaws.com/v1";
  EXPECT_NE(refused(s).find("'endpoint'"), std::string::npos);
  s.endpoint = "https://user:pw@ec2.eu-west-1.amazonaws.com";
  EXPECT_NE(refused(s).find("'endpoint'"), std::string::npos);
}

TEST(aws_settings, ami_ids) {
  EXPECT_TRUE(is_ami_id("ami-12345678"));
  EXPECT_TRUE(is_ami_id("ami-0123456789abcdef0"));
  EXPECT_FALSE(is_ami_id("ami-1234567"));
  EXPECT_FALSE(is_ami_id("ami-0123456789ABCDEF0"));
  EXPECT_FALSE(is_ami_id("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*"));
  EXPECT_FALSE(is_ami_id("ami-"));
}

}  // namespace
}  // namespace cloudbrain::providers::aws
