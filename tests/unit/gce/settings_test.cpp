#include "providers/gce/settings.hpp"

#include <gtest/gtest.h>

namespace cloudbrain::providers::gce {
namespace {

provider_section section(std::map<std::string, std::string> settings) {
  provider_section s;
  s.name = "gce-staging";
  s.type = "gce";
  s.zones = {"us-central1-a", "us-central1-b"};
  s.settings = std::move(settings);
  return s;
}

error refused(const provider_section& s) {
  auto r = gce_settings::from_section(s);
  EXPECT_FALSE(r) << "accepted";
  return r ? error{} : r.error();
}

TEST(gce_settings, defaults) {
  auto g = gce_settings::from_section(section({{"project", "my-project"}}));
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->project, "my-project");
  EXPECT_EQ(g->image_project, "my-project");
  EXPECT_EQ(g->zones, (std::vector<std::string>{"us-central1-a", "us-central1-b"}));
  EXPECT_EQ(g->endpoint, "https://compute.googleapis.com");
  EXPECT_EQ(g->credentials, "");
  EXPECT_EQ(g->standard_machine_type, "n1-standard-2");
  EXPECT_EQ(g->premium_machine_type, "n1-standard-4");
  EXPECT_EQ(g->ssh_user, "cloudbrain");
  EXPECT_EQ(g->network, "global/networks/default");
  EXPECT_EQ(g->subnetwork, "");
  EXPECT_EQ(g->disk_size_gb, 20u);
  EXPECT_EQ(g->disk_type, "pd-balanced");
  EXPECT_TRUE(g->external_ip);
  EXPECT_FALSE(g->preemptible);
  EXPECT_FALSE(g->spot);
  EXPECT_EQ(g->metadata_host, "metadata.google.internal");
  EXPECT_EQ(g->token_uri_override, "");
  EXPECT_EQ(g->machine_type_for("standard").value(), "n1-standard-2");
  EXPECT_EQ(g->machine_type_for("").value(), "n1-standard-2");
  EXPECT_EQ(g->machine_type_for("premium").value(), "n1-standard-4");
  EXPECT_FALSE(g->machine_type_for("huge"));
}

TEST(gce_settings, every_key) {
  auto s = section({{"project", "example.com:my-project"},
                    {"credentials", "/etc/cloudbrain/gce.json"},
                    {"image-project", "my-images"},
                    {"standard-machine-type", "e2-standard-2"},
                    {"premium-machine-type", "c2-standard-4"},
                    {"ssh-user", "travis"},
                    {"network", "projects/host/global/networks/ci"},
                    {"subnetwork", "ci-subnet"},
                    {"disk-size-gb", "50"},
                    {"disk-type", "pd-ssd"},
                    {"external-ip", "false"},
                    {"spot", "yes"},
                    {"ca-file", "/etc/ssl/emulator.pem"},
                    {"metadata-host", "127.0.0.1:8081"},
                    {"token-uri-override", "http://127.0.0.1:8081/token"}});
  s.endpoint = "http://127.0.0.1:8081/compute/v1/";
  auto g = gce_settings::from_section(s);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->project, "example.com:my-project");
  EXPECT_EQ(g->credentials, "/etc/cloudbrain/gce.json");
  EXPECT_EQ(g->image_project, "my-images");
  EXPECT_EQ(g->standard_machine_type, "e2-standard-2");
  EXPECT_EQ(g->premium_machine_type, "c2-standard-4");
  EXPECT_EQ(g->ssh_user, "travis");
  EXPECT_EQ(g->network, "projects/host/global/networks/ci");
  EXPECT_EQ(g->subnetwork, "ci-subnet");
  EXPECT_EQ(g->disk_size_gb, 50u);
  EXPECT_EQ(g->disk_type, "pd-ssd");
  EXPECT_FALSE(g->external_ip);
  EXPECT_TRUE(g->spot);
  EXPECT_FALSE(g->preemptible);
  EXPECT_EQ(g->ca_file, "/etc/ssl/emulator.pem");
  EXPECT_EQ(g->metadata_host, "127.0.0.1:8081");
  EXPECT_EQ(g->token_uri_override, "http://127.0.0.1:8081/token");
  EXPECT_EQ(g->endpoint, "http://127.0.0.1:8081");  // the gcloud-style suffix is dropped
}

TEST(gce_settings, endpoint_forms) {
  auto s = section({{"project", "p-1"}});
  s.endpoint = "https://compute.googleapis.com/";
  EXPECT_EQ(gce_settings::from_section(s)->endpoint, "https://compute.googleapis.com");
  s.endpoint = "ftp://example.com";
  EXPECT_NE(refused(s).detail.find("'endpoint'"), std::string::npos);
  s.endpoint = "compute.googleapis.com";
  EXPECT_TRUE(refused(s).is(errc::bad_config));
}

TEST(gce_settings, unknown_key_is_named) {
  const auto e = refused(section({{"project", "p-1"}, {"regoin", "us-central1"}}));
  EXPECT_TRUE(e.is(errc::bad_config));
  EXPECT_NE(e.detail.find("'regoin'"), std::string::npos) << e.detail;
  EXPECT_NE(e.detail.find("[provider.gce-staging]"), std::string::npos) << e.detail;
}

TEST(gce_settings, required_keys) {
  auto e = refused(section({}));
  EXPECT_TRUE(e.is(errc::bad_config));
  EXPECT_NE(e.detail.find("'project'"), std::string::npos) << e.detail;
  auto s = section({{"project", "p-1"}});
  s.zones.clear();
  e = refused(s);
  EXPECT_NE(e.detail.find("'zones'"), std::string::npos) << e.detail;
}

TEST(gce_settings, bad_values_are_named) {
  const std::pair<const char*, const char*> bad[] = {
      {"project", "My Project"},
      {"image-project", ""},
      {"standard-machine-type", "N1-STANDARD-2"},
      {"premium-machine-type", "n1/standard"},
      {"ssh-user", "root:x"},
      {"ssh-user", "9lives"},
      {"network", "has space"},
      {"subnetwork", ""},
      {"disk-size-gb", "9"},
      {"disk-size-gb", "20GB"},
      {"disk-size-gb", "-5"},
      {"disk-size-gb", "100000"},
      {"disk-type", "pd ssd"},
      {"external-ip", "maybe"},
      {"preemptible", "2"},
      {"spot", ""},
      {"metadata-host", "http://metadata/"},
      {"token-uri-override", "not a url"},
  };
  for (const auto& [key, value] : bad) {
    auto s = section({{"project", "p-1"}});
    s.settings[key] = value;
    const auto e = refused(s);
    EXPECT_TRUE(e.is(errc::bad_config)) << key;
    EXPECT_NE(e.detail.find(std::string("'") + key + "'"), std::string::npos) << e.detail;
  }
}

TEST(gce_settings, zones_must_look_like_zones) {
  auto s = section({{"project", "p-1"}});
  s.zones = {"us-central1-a", "Zone A"};
  EXPECT_NE(refused(s).detail.find("Zone A"), std::string::npos);
}

TEST(gce_settings, spot_and_preemptible_exclude_each_other) {
  const auto e = refused(section({{"project", "p-1"}, {"spot", "true"}, {"preemptible", "true"}}));
  EXPECT_NE(e.detail.find("spot"), std::string::npos);
  auto g = gce_settings::from_section(section({{"project", "p-1"}, {"preemptible", "on"}}));
  ASSERT_TRUE(g);
  EXPECT_TRUE(g->preemptible);
}

}  // namespace
}  // namespace cloudbrain::providers::gce
