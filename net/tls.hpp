#pragma once

// The API listener's TLS: a server context from a certificate chain and its private key (PEM),
// TLS 1.2 and 1.3 only. Built on the blocking pool at start and on every SIGHUP; a connection
// keeps the context it was accepted with.

#include "core/error.hpp"

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace cloudbrain::net {

// From the files' contents; `cert_path` and `key_path` only name them in messages. An error
// (errc::bad_config) says which file is wrong and why, never what the key holds.
[[nodiscard]] result<std::shared_ptr<boost::asio::ssl::context>> make_server_tls_context(
    const std::string& cert_pem, const std::string& key_pem, const std::string& cert_path,
    const std::string& key_path);

// Reads both files (small; call it off the event loop) and builds the context.
[[nodiscard]] result<std::shared_ptr<boost::asio::ssl::context>> load_server_tls_context(
    const std::string& cert_path, const std::string& key_path);

}  // namespace cloudbrain::net
