#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace cloudbrain::providers::aws::test {

// The project's root, as CTest gives it (CLOUDBRAIN_SOURCE_DIR).
inline std::filesystem::path source_dir() {
  const char* root = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return root ? std::filesystem::path(root) : std::filesystem::current_path();
}

// AWS's SigV4 test suite: ../shared/vectors/aws-sigv4 relative to the project's root, or
// CLOUDBRAIN_VECTORS_DIR/aws-sigv4 (a checkout elsewhere). A missing folder fails the test.
inline std::filesystem::path sigv4_vectors() {
  const char* dir = std::getenv("CLOUDBRAIN_VECTORS_DIR");
  const auto root =
      dir && *dir ? std::filesystem::path(dir) : source_dir() / ".." / "shared" / "vectors";
  return root / "aws-sigv4";
}

inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return {};
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A recorded payload from tests/unit/aws/payloads/.
inline std::string payload(const std::string& name) {
  return read_file(source_dir() / "tests" / "unit" / "aws" / "payloads" / name);
}

}  // namespace cloudbrain::providers::aws::test
