#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace cloudbrain::providers::oci::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return {};
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::string source_dir() {
  const char* root = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  return root ? root : ".";
}

// A payload from tests/unit/oci/payloads/.
inline std::string payload(const std::string& name) {
  return read_file(source_dir() + "/tests/unit/oci/payloads/" + name);
}

// The shared signing vectors: ../shared/vectors/oci-signing relative to the project's root, or
// CLOUDBRAIN_VECTORS_DIR/oci-signing (a checkout elsewhere). A missing folder fails the test.
inline std::string vectors_dir() {
  const char* dir = std::getenv("CLOUDBRAIN_VECTORS_DIR");
  return (dir && *dir ? std::string(dir) : source_dir() + "/../shared/vectors") + "/oci-signing";
}

}  // namespace cloudbrain::providers::oci::test
