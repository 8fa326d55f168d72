#include "net/tls.hpp"

#include "core/file.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/ssl/error.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

namespace cloudbrain::net {
namespace ssl = boost::asio::ssl;

namespace {

// A certificate chain with its key is a few kilobytes; a megabyte is plenty.
constexpr std::size_t max_pem_file = 1024 * 1024;

}  // namespace

result<std::shared_ptr<ssl::context>> make_server_tls_context(const std::string& cert_pem,
                                                              const std::string& key_pem,
                                                              const std::string& cert_path,
                                                              const std::string& key_path) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(native, TLS1_3_VERSION) != 1) {
    return fail(errc::internal, "this OpenSSL cannot limit TLS to versions 1.2 and 1.3");
  }
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  SSL_CTX_set_options(native, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION);
  // An encrypted key gets an empty pass phrase and fails to load: never a prompt on a terminal.
  ctx->set_password_callback(
      [](std::size_t, ssl::context::password_purpose) { return std::string(); });

  boost::system::error_code ec;
  ctx->use_certificate_chain(boost::asio::buffer(cert_pem), ec);
  if (ec) {
    return fail(errc::bad_config, "'tls-cert' names '" + cert_path +
                                      "', which holds no PEM certificate chain (" + ec.message() +
                                      ")");
  }
  ctx->use_private_key(boost::asio::buffer(key_pem), ssl::context::pem, ec);
  if (ec && ec.category() == boost::asio::error::get_ssl_category() &&
      ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
    return fail(errc::bad_config, "the key in '" + key_path +
                                      "' (tls-key) is not the key of the certificate in '" +
                                      cert_path + "' (tls-cert)");
  }
  if (ec) {
    return fail(errc::bad_config, "'tls-key' names '" + key_path +
                                      "', which holds no unencrypted PEM private key (" +
                                      ec.message() + ")");
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return fail(errc::bad_config, "the key in '" + key_path +
                                      "' (tls-key) is not the key of the certificate in '" +
                                      cert_path + "' (tls-cert)");
  }
  return ctx;
}

result<std::shared_ptr<ssl::context>> load_server_tls_context(const std::string& cert_path,
                                                              const std::string& key_path) {
  auto cert = read_whole_file(cert_path, max_pem_file);
  if (!cert) {
    return fail(errc::bad_config, "'tls-cert' names '" + cert_path +
                                      "', which cannot be read: " + cert.error().detail);
  }
  auto key = read_whole_file(key_path, max_pem_file);
  if (!key) {
    return fail(errc::bad_config,
                "'tls-key' names '" + key_path + "', which cannot be read: " + key.error().detail);
  }
  return make_server_tls_context(*cert, *key, cert_path, key_path);
}

}  // namespace cloudbrain::net
