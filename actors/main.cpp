#include "actors/manual.hpp"
#include "actors/service.hpp"

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

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
    if (args.empty()) {
      std::cerr << cloudbrain::short_usage();
      return 2;
    }
    if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
      std::cout << cloudbrain::manual_page();
      return 0;
    }
    if (args[0] == "--version") {
      std::cout << "cloudbrain " << CLOUDBRAIN_VERSION << "\n";
      return 0;
    }
    const std::string command = args[0];
    args.erase(args.begin());
    if (command == "serve") return cloudbrain::run_serve(args);
    if (command == "token") return cloudbrain::run_token_command(args);
    if (command == "usage") return cloudbrain::run_usage_command(args);
    if (command == "audit") return cloudbrain::run_audit_command(args);
    if (command == "routes")
      return cloudbrain::run_serve(args, cloudbrain::serve_mode::print_routes);
    std::cerr << "cloudbrain: unknown command '" << command << "'\n\n" << cloudbrain::short_usage();
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "cloudbrain: " << e.what() << "\n";
    return 1;
  }
}
