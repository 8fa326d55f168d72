// Every fuzz target replays its seeds (tests/fuzz/corpus/<target>/) and every input that ever
// crashed it (tests/fuzz/regressions/<target>/), in the regular sanitizer build: a crash found by
// fuzzing stays a test once it is fixed.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#define CLOUDBRAIN_DECLARE_FUZZ(name) \
  int cloudbrain_fuzz_##name(const std::uint8_t* data, std::size_t size);
CLOUDBRAIN_DECLARE_FUZZ(http_request)
CLOUDBRAIN_DECLARE_FUZZ(request_bodies)
CLOUDBRAIN_DECLARE_FUZZ(authorization)
CLOUDBRAIN_DECLARE_FUZZ(list_query)
CLOUDBRAIN_DECLARE_FUZZ(config)
CLOUDBRAIN_DECLARE_FUZZ(gce_wire)
CLOUDBRAIN_DECLARE_FUZZ(aws_wire)
CLOUDBRAIN_DECLARE_FUZZ(azure_wire)
CLOUDBRAIN_DECLARE_FUZZ(oci_wire)

namespace {

namespace fs = std::filesystem;
using fuzz_fn = int (*)(const std::uint8_t*, std::size_t);

const std::map<std::string, fuzz_fn>& targets() {
  static const std::map<std::string, fuzz_fn> all = {
      {"http_request", &cloudbrain_fuzz_http_request},
      {"request_bodies", &cloudbrain_fuzz_request_bodies},
      {"authorization", &cloudbrain_fuzz_authorization},
      {"list_query", &cloudbrain_fuzz_list_query},
      {"config", &cloudbrain_fuzz_config},
      {"gce_wire", &cloudbrain_fuzz_gce_wire},
      {"aws_wire", &cloudbrain_fuzz_aws_wire},
      {"azure_wire", &cloudbrain_fuzz_azure_wire},
      {"oci_wire", &cloudbrain_fuzz_oci_wire},
  };
  return all;
}

fs::path fuzz_dir() {
  const char* src = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return fs::path(src ? src : ".") / "tests" / "fuzz";
}

std::vector<fs::path> inputs(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir)) {
    for (const auto& e : fs::directory_iterator(dir)) {
      if (e.is_regular_file()) out.push_back(e.path());
    }
  }
  return out;
}

int replay(fuzz_fn fn, const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return fn(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

TEST(FuzzRegressions, EveryTargetListedHereIsBuilt) {
  // The CMake list and this file name the same targets.
  std::string listed = CLOUDBRAIN_FUZZ_TARGET_LIST;
  std::stringstream names(listed);
  std::vector<std::string> built;
  for (std::string n; std::getline(names, n, ',');) built.push_back(n);
  ASSERT_EQ(built.size(), targets().size());
  for (const auto& n : built) EXPECT_TRUE(targets().contains(n)) << n;
}

TEST(FuzzRegressions, SeedsAndFoundCrashesReplayCleanly) {
  for (const auto& [name, fn] : targets()) {
    const auto seeds = inputs(fuzz_dir() / "corpus" / name);
    EXPECT_GE(seeds.size(), 3u) << "tests/fuzz/corpus/" << name << " needs seeds";
    auto all = seeds;
    const auto found = inputs(fuzz_dir() / "regressions" / name);
    all.insert(all.end(), found.begin(), found.end());
    for (const auto& file : all) {
      SCOPED_TRACE(file.string());
      EXPECT_EQ(replay(fn, file), 0);
    }
  }
}

}  // namespace
