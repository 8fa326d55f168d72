#include "actors/service.hpp"

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

constexpr const char* usage =
    R"(cloudbrain — one HTTP API for cloud VM instances and capacity reservations

Usage:
  cloudbrain serve [--config FILE] [--listen HOST:PORT] [--database-url URL] [OPTIONS]
  cloudbrain token create "description"     prints: generated token: <token>
  cloudbrain token list
  cloudbrain token revoke <id>
  cloudbrain-create-token "description"     the same as `cloudbrain token create`
  cloudbrain routes [SERVE OPTIONS]         prints the HTTP routes `serve` would answer
  cloudbrain --version

`cloudbrain serve --help` lists every option. The database comes from --database-url,
CLOUDBRAIN_DATABASE_URL or DATABASE_URL.
)";

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const std::string self = argv[0];
  const auto slash = self.rfind('/');
  const std::string name = slash == std::string::npos ? self : self.substr(slash + 1);
  try {
    if (name == "cloudbrain-create-token") {
      args.insert(args.begin(), "create");
      return cloudbrain::run_token_command(args);
    }
    if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      std::cout << usage;
      return args.empty() ? 2 : 0;
    }
    if (args[0] == "--version") {
      std::cout << "cloudbrain " << CLOUDBRAIN_VERSION << "\n";
      return 0;
    }
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "serve") return cloudbrain::run_serve(args);
    if (command == "token") return cloudbrain::run_token_command(args);
    if (command == "routes")
      return cloudbrain::run_serve(args, cloudbrain::serve_mode::print_routes);
    std::cerr << "cloudbrain: unknown command '" << command << "'\n\n" << usage;
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cloudbrain: " << e.what() << "\n";
    return 1;
  }
}
