#include "core/file.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>

namespace cloudbrain {
namespace {
namespace fs = std::filesystem;

TEST(read_whole_file, reads_small_files_and_refuses_the_rest_without_their_content) {
  const fs::path dir = fs::temp_directory_path() / ("cb-file-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string small = (dir / "small").string();
  std::ofstream(small, std::ios::binary) << std::string("secret\0bytes\n", 13);
  auto text = read_whole_file(small, 13);
  ASSERT_TRUE(text) << text.error().message();
  EXPECT_EQ(*text, std::string("secret\0bytes\n", 13));
  EXPECT_EQ(read_whole_file((dir / "empty").string(), 10).error().detail,
            "No such file or directory");
  std::ofstream(dir / "empty");
  EXPECT_EQ(read_whole_file((dir / "empty").string(), 10).value(), "");

  const std::string big = (dir / "big").string();
  std::ofstream(big) << std::string(5000, 'k');
  auto refused = read_whole_file(big, 4096);
  ASSERT_FALSE(refused);
  EXPECT_TRUE(refused.error().is(errc::bad_config));
  EXPECT_EQ(refused.error().detail, "larger than 4 KiB");
  EXPECT_FALSE(read_whole_file(dir.string(), 100));  // a directory is no file
  fs::remove_all(dir);
}

}  // namespace
}  // namespace cloudbrain
