// The binary's required schema change is the plan's last: a change added to schema/sqitch.plan
// without the binary requiring it would let the service run against a database without it.

#include "actors/service.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace {

TEST(required_schema_change, is_the_last_change_of_the_plan) {
  const char* root = std::getenv("CLOUDBRAIN_SOURCE_DIR");
  ASSERT_NE(root, nullptr) << "CLOUDBRAIN_SOURCE_DIR is not set";
  std::ifstream plan(std::string(root) + "/schema/sqitch.plan");
  ASSERT_TRUE(plan) << "cannot read schema/sqitch.plan";
  std::string line, last;
  while (std::getline(plan, line)) {
    // Pragmas (%), tags (@), comments (#) and blank lines are not changes.
    if (line.empty() || line[0] == '%' || line[0] == '@' || line[0] == '#') continue;
    last = line.substr(0, line.find_first_of(" \t"));
  }
  EXPECT_EQ(last, cloudbrain::required_schema_change);
}

}  // namespace
