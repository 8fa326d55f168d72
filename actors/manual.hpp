#pragma once

#include <string>

namespace cloudbrain {

// `cloudbrain --help`: the whole manual, laid out as a man page (NAME, SYNOPSIS, ... SEE ALSO).
// deploy/man-from-help.py turns it into cloudbrain(1) at build time, so both say the same: a
// heading starts in column 0, a term is indented by four spaces with its meaning by eight below
// it, a paragraph by four, and an example by eight after a blank line.
[[nodiscard]] std::string manual_page();

// `cloudbrain serve --help`: the parts of the manual about `serve`.
[[nodiscard]] std::string serve_manual();

// What `cloudbrain` without a command prints: the synopsis and where to read more.
[[nodiscard]] std::string short_usage();

}  // namespace cloudbrain
