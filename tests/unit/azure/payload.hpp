#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace cloudbrain::providers::azure::test {

// A recorded payload from tests/unit/azure/payloads/.
inline std::string payload(const std::string& name) {
  const char* root = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  const std::string path = std::string(root ? root : ".") + "/tests/unit/azure/payloads/" + name;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return {};
  }
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace cloudbrain::providers::azure::test
