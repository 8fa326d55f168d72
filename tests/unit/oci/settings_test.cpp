#include "providers/oci/settings.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>

namespace cloudbrain::providers::oci {
namespace {

constexpr const char* tenancy =
    "ocid1.tenancy.oc1..aaaaaaaaba3pv6wkcr4jqae5f15p2b2m2yt2j6rx32uzr4h25vqstifsfdsq";
constexpr const char* user =
    "ocid1.user.oc1..aaaaaaaat5nvwcna5j6aqzjcaty5eqbb6qt2jvpkanghtgdaqedqw3rynjq";
constexpr const char* compartment = "ocid1.compartment.oc1..aaaaaaaa4eiqbcuxqewyoyzmx5cd27jqjdnjq";
constexpr const char* subnet = "ocid1.subnet.oc1.iad.aaaaaaaazyx5qc2smsn5ofdf7jlfvxhkcyb4jkwwy";
constexpr const char* fingerprint = "20:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34";

std::map<std::string, std::string> key_fields() {
  return {{"tenancy", tenancy},
          {"user", user},
          {"fingerprint", fingerprint},
          {"key-file", "/etc/cloudbrain/oci-key.pem"}};
}

provider_section section(std::map<std::string, std::string> settings, bool with_key = true) {
  provider_section s;
  s.name = "oci";
  s.type = "oci";
  s.zones = {"Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2"};
  s.settings = {{"region", "us-ashburn-1"}, {"compartment", compartment}, {"subnet", subnet}};
  if (with_key) s.settings.merge(key_fields());
  for (auto& [k, v] : settings) s.settings[k] = v;
  return s;
}

std::string refused(const provider_section& s) {
  auto r = oci_settings::from_section(s);
  EXPECT_FALSE(r) << "accepted";
  if (r) return {};
  EXPECT_TRUE(r.error().is(errc::bad_config));
  EXPECT_NE(r.error().detail.find("[provider.oci]"), std::string::npos) << r.error().detail;
  return r.error().detail;
}

class temp_dir {
 public:
  temp_dir()
      : path_(std::filesystem::temp_directory_path() /
              ("oci-settings-" + std::to_string(::getpid()) + "-" + std::to_string(++n_))) {
    std::filesystem::create_directories(path_);
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string write(const std::string& name, const std::string& text) const {
    const auto p = path_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

 private:
  static inline int n_ = 0;
  std::filesystem::path path_;
};

TEST(oci_settings, defaults) {
  auto o = oci_settings::from_section(section({}));
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->zones, (std::vector<std::string>{"Uocm:US-ASHBURN-AD-1", "Uocm:US-ASHBURN-AD-2"}));
  EXPECT_EQ(o->endpoint, "https://iaas.us-ashburn-1.oraclecloud.com");
  EXPECT_EQ(o->identity.key_id(), std::string(tenancy) + "/" + user + "/" + fingerprint);
  EXPECT_EQ(o->identity.key_file, "/etc/cloudbrain/oci-key.pem");
  EXPECT_EQ(o->ssh_user, "opc");
  EXPECT_TRUE(o->assign_public_ip);
  EXPECT_EQ(o->boot_volume_size_gb, 0u);
  EXPECT_EQ(o->standard.shape, "VM.Standard.E4.Flex");
  EXPECT_EQ(o->standard.ocpus, 1.0);
  EXPECT_EQ(o->standard.memory_gb, 8.0);
  EXPECT_EQ(o->premium.ocpus, 4.0);
  EXPECT_EQ(o->premium.memory_gb, 32.0);
  EXPECT_EQ((*o->shape_for(""))->shape, "VM.Standard.E4.Flex");
  EXPECT_EQ(*o->shape_for("premium"), &o->premium);
  EXPECT_TRUE(o->shape_for("huge").error().is(errc::cloud_permanent));
  EXPECT_EQ(o->standard.describe(), "VM.Standard.E4.Flex (1 OCPU, 8 GB)");
  EXPECT_EQ(o->premium.describe(), "VM.Standard.E4.Flex (4 OCPUs, 32 GB)");
}

TEST(oci_settings, every_key_of_api_md) {
  auto s = section({{"standard-shape", "VM.Standard.A1.Flex"},
                    {"standard-ocpus", "2"},
                    {"standard-memory-gb", "12.5"},
                    {"premium-shape", "VM.Standard3.Flex"},
                    {"premium-ocpus", "0.5"},
                    {"premium-memory-gb", "6"},
                    {"ssh-user", "travis"},
                    {"assign-public-ip", "false"},
                    {"boot-volume-size-gb", "100"},
                    {"ca-file", "/etc/ssl/oci-ca.pem"},
                    {"fingerprint", "20:3B:97:13:55:1C:5B:0D:D3:37:D8:50:4E:C5:3A:34"}});
  s.endpoint = "http://127.0.0.1:9000/20160918/";
  auto o = oci_settings::from_section(s);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->endpoint, "http://127.0.0.1:9000");
  EXPECT_EQ(o->identity.fingerprint, fingerprint);  // lowered
  EXPECT_EQ(o->standard.describe(), "VM.Standard.A1.Flex (2 OCPUs, 12.5 GB)");
  EXPECT_EQ(o->premium.describe(), "VM.Standard3.Flex (0.5 OCPUs, 6 GB)");
  EXPECT_EQ(o->ssh_user, "travis");
  EXPECT_FALSE(o->assign_public_ip);
  EXPECT_EQ(o->boot_volume_size_gb, 100u);
  EXPECT_EQ(o->ca_file, "/etc/ssl/oci-ca.pem");
}

TEST(oci_settings, fixed_shapes_take_no_shape_config) {
  auto o = oci_settings::from_section(section({{"standard-shape", "VM.Standard2.1"}}));
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_FALSE(o->standard.flex());
  EXPECT_FALSE(o->standard.ocpus);
  EXPECT_EQ(o->standard.describe(), "VM.Standard2.1");

  auto why = refused(section({{"premium-shape", "VM.Standard2.4"}, {"premium-ocpus", "4"}}));
  EXPECT_NE(why.find("apply only to Flex shapes"), std::string::npos) << why;
  why = refused(section({{"standard-shape", "VM.Standard.A1.Flex"}}));
  EXPECT_NE(why.find("'standard-ocpus' is required"), std::string::npos) << why;
  // Memory alone leaves the OCPUs unsaid.
  why = refused(section({{"premium-shape", "VM.Optimized3.Flex"}, {"premium-memory-gb", "16"}}));
  EXPECT_NE(why.find("'premium-ocpus' is required"), std::string::npos) << why;
}

TEST(oci_settings, bad_values_are_named) {
  struct bad_case {
    std::string key, value, expect;
  };
  for (const auto& c : std::vector<bad_case>{
           {"region", "US Ashburn", "'region'"},
           {"compartment", "ocid1.subnet.oc1..aaaa", "compartment OCID"},
           {"tenancy", "my-tenancy", "tenancy OCID"},
           {"user", "ocid1.user.oc1..", "user OCID"},
           {"fingerprint", "12:34:56", "fingerprint"},
           {"fingerprint", "zz:3b:97:13:55:1c:5b:0d:d3:37:d8:50:4e:c5:3a:34", "fingerprint"},
           {"subnet", "subnet-1", "subnet OCID"},
           {"standard-shape", "VM Standard", "'standard-shape'"},
           {"standard-ocpus", "0", "'standard-ocpus'"},
           {"standard-ocpus", "-1", "'standard-ocpus'"},
           {"premium-ocpus", "four", "'premium-ocpus'"},
           {"premium-memory-gb", "1e9", "'premium-memory-gb'"},
           {"ssh-user", "Root User", "'ssh-user'"},
           {"assign-public-ip", "maybe", "'assign-public-ip'"},
           {"boot-volume-size-gb", "10", "'boot-volume-size-gb'"},
           {"colour", "blue", "unknown key 'colour'"},
       }) {
    SCOPED_TRACE(c.key + "=" + c.value);
    const auto why = refused(section({{c.key, c.value}}));
    EXPECT_NE(why.find(c.expect), std::string::npos) << why;
  }
  auto s = section({});
  s.zones = {"us-ashburn-1a"};
  EXPECT_NE(refused(s).find("availability domains like Uocm:US-ASHBURN-AD-1"), std::string::npos);
  s.zones.clear();
  EXPECT_NE(refused(s).find("'zones'"), std::string::npos);
  s = section({});
  s.endpoint = "ftp://example.com";
  EXPECT_NE(refused(s).find("'endpoint'"), std::string::npos);
}

TEST(oci_settings, required_keys) {
  auto s = section({});
  s.settings.erase("compartment");
  EXPECT_NE(refused(s).find("'compartment' is required"), std::string::npos);
  s = section({});
  s.settings.erase("subnet");
  EXPECT_NE(refused(s).find("'subnet' is required"), std::string::npos);
  s = section({});
  s.settings.erase("region");
  EXPECT_NE(refused(s).find("needs 'region'"), std::string::npos);
  s.endpoint = "http://127.0.0.1:1234";
  EXPECT_TRUE(oci_settings::from_section(s));  // an endpoint is enough

  // The API key: all four fields, each one named when missing.
  s = section({}, false);
  auto why = refused(s);
  EXPECT_NE(why.find("'tenancy', 'user', 'fingerprint', 'key-file'"), std::string::npos) << why;
  EXPECT_NE(why.find("config-file"), std::string::npos) << why;
  s = section({{"tenancy", tenancy}, {"key-file", "/k.pem"}}, false);
  why = refused(s);
  EXPECT_NE(why.find("needs 'user', 'fingerprint'"), std::string::npos) << why;
  EXPECT_NE(refused(section({{"profile", "CI"}})).find("'profile' needs 'config-file'"),
            std::string::npos);
}

TEST(oci_settings, config_file_profiles) {
  temp_dir dir;
  const std::string key_path = dir.write("ci.pem", "not read here");
  const std::string config =
      dir.write("config",
                "# the OCI CLI's file\n"
                "[DEFAULT]\n"
                "user=" +
                    std::string(user) +
                    "\n"
                    "fingerprint=" +
                    fingerprint +
                    "\n"
                    "key_file=" +
                    key_path +
                    "\n"
                    "tenancy=" +
                    tenancy +
                    "\n"
                    "region=us-phoenix-1\n"
                    "\n"
                    "[CI]\n"
                    "fingerprint = aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99\n"
                    "region = eu-frankfurt-1\n"
                    "pass_phrase = hunter2\n");
  auto s = section({{"config-file", config}}, false);
  s.settings.erase("region");
  auto o = oci_settings::from_section(s);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->profile, "DEFAULT");
  EXPECT_EQ(o->region, "us-phoenix-1");
  EXPECT_EQ(o->endpoint, "https://iaas.us-phoenix-1.oraclecloud.com");
  EXPECT_EQ(o->identity.key_id(), std::string(tenancy) + "/" + user + "/" + fingerprint);
  EXPECT_EQ(o->identity.key_file, key_path);

  // A named profile takes [DEFAULT]'s values for what it does not say; the section's region wins.
  s.settings["profile"] = "CI";
  s.settings["region"] = "us-ashburn-1";
  o = oci_settings::from_section(s);
  ASSERT_TRUE(o) << o.error().message();
  EXPECT_EQ(o->identity.fingerprint, "aa:bb:cc:dd:ee:ff:00:11:22:33:44:55:66:77:88:99");
  EXPECT_EQ(o->identity.user, user);
  EXPECT_EQ(o->identity.pass_phrase, "hunter2");
  EXPECT_EQ(o->region, "us-ashburn-1");

  s.settings["profile"] = "NIGHTLY";
  auto why = refused(s);
  EXPECT_NE(why.find("has no profile [NIGHTLY] (it has: CI, DEFAULT)"), std::string::npos) << why;
  EXPECT_EQ(why.find("hunter2"), std::string::npos);

  // Either the file or the fields.
  s = section({{"config-file", config}});
  EXPECT_NE(refused(s).find("not both"), std::string::npos);
  s = section({{"config-file", dir.write("empty", "")}}, false);
  EXPECT_NE(refused(s).find("has no profile [DEFAULT]"), std::string::npos);
  s = section({{"config-file", "/nonexistent/oci/config"}}, false);
  EXPECT_NE(refused(s).find("cannot read the OCI config file '/nonexistent/oci/config'"),
            std::string::npos);
}

TEST(oci_config_file, parsing) {
  auto p =
      parse_oci_config("[DEFAULT]\ntenancy=t\nuser=u\nfingerprint=f\nkey_file=~/.oci/key.pem\n",
                       "DEFAULT", "/home/ci");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->key_file, "/home/ci/.oci/key.pem");
  EXPECT_EQ(p->region, "");

  auto missing = parse_oci_config("[DEFAULT]\ntenancy=t\nuser=u\n", "DEFAULT", "/h");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().detail.find("has no fingerprint, key_file"), std::string::npos);
  auto token_profile =
      parse_oci_config("[S]\ntenancy=t\nfingerprint=f\nsecurity_token_file=/t\n", "S", "/h");
  ASSERT_FALSE(token_profile);
  EXPECT_NE(token_profile.error().detail.find("security-token profiles are not supported"),
            std::string::npos);
  EXPECT_FALSE(parse_oci_config("tenancy=t\n[DEFAULT]\n", "DEFAULT", "/h"));
  EXPECT_FALSE(parse_oci_config("[DEFAULT\ntenancy=t\n", "DEFAULT", "/h"));
  EXPECT_FALSE(parse_oci_config("[DEFAULT]\njust words\n", "DEFAULT", "/h"));
}

TEST(oci_ocids, shapes_of_ids) {
  EXPECT_TRUE(valid_ocid("ocid1.tenancy.oc1..aaaa", "tenancy"));
  EXPECT_TRUE(valid_ocid("ocid1.subnet.oc1.iad.aaaa", "subnet"));
  EXPECT_TRUE(valid_ocid("ocid1.image.oc1.eu-frankfurt-1.aaaa", "image"));
  EXPECT_FALSE(valid_ocid("ocid1.image.oc1.iad.aaaa", "subnet"));
  EXPECT_FALSE(valid_ocid("ocid1.image.oc1.iad.", "image"));
  EXPECT_FALSE(valid_ocid("ocid2.image.oc1.iad.aaaa", "image"));
  EXPECT_FALSE(valid_ocid("ocid1.image.oc1", "image"));
  EXPECT_FALSE(valid_ocid("ocid1.image.OC1.iad.aaaa", "image"));
  EXPECT_FALSE(valid_ocid("image-2016-01-01", "image"));
}

}  // namespace
}  // namespace cloudbrain::providers::oci
