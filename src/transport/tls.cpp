// TlsContext and TlsChannel; see tls.hpp.
#include "transport/tls.hpp"

#include <openssl/bio.h>
#include <openssl/buffer.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <stdexcept>

namespace chat::transport {

namespace {
// Plaintext sealed per SSL_write: one full record, so the outgoing BIO never
// holds more than one.
constexpr std::size_t kRecord = 16 * 1024;

std::string openssl_reason() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? std::string("unknown error") : out;
}

void require_readable(const char* flag, const std::string& file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw std::runtime_error(std::string(flag) + ": cannot read " + file);
}

// ALPN: http/1.1 when the client offers it; with any other list the
// handshake goes on without ALPN (the client then speaks HTTP/1.1 or leaves).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kHttp11, sizeof kHttp11, in, inlen) ==
      OPENSSL_NPN_NEGOTIATED) {
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
  }
  return SSL_TLSEXT_ERR_NOACK;
}
}  // namespace

TlsContext::TlsContext(const std::string& cert_file, const std::string& key_file) {
  require_readable("--tls-cert", cert_file);
  require_readable("--tls-key", key_file);
  ERR_clear_error();
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (!ctx_) throw std::runtime_error("TLS: cannot create a context: " + openssl_reason());
  try {
    SSL_CTX_set_min_proto_version(ctx_, TLS1_2_VERSION);
    // No renegotiation (a client could make the server redo handshakes and
    // write outside of its own writes), no session tickets (the server
    // would write them after the handshake; reconnects do a full handshake).
    SSL_CTX_set_options(ctx_, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx_, 0);
    SSL_CTX_set_session_cache_mode(ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx_, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_alpn_select_cb(ctx_, select_alpn, nullptr);
    if (SSL_CTX_use_certificate_chain_file(ctx_, cert_file.c_str()) != 1)
      throw std::runtime_error("--tls-cert: " + cert_file +
                               " is not a PEM certificate chain: " + openssl_reason());
    if (SSL_CTX_use_PrivateKey_file(ctx_, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
      // OpenSSL checks the key against the certificate as it loads it.
      const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
      throw std::runtime_error("--tls-key: " + key_file +
                               (mismatch ? " does not match the certificate in " + cert_file
                                         : std::string(" is not a PEM private key")) +
                               ": " + openssl_reason());
    }
    if (SSL_CTX_check_private_key(ctx_) != 1)
      throw std::runtime_error("--tls-key: " + key_file + " does not match the certificate in " +
                               cert_file + ": " + openssl_reason());
  } catch (...) {
    ERR_clear_error();
    SSL_CTX_free(ctx_);
    throw;
  }
}

TlsContext::~TlsContext() {
  SSL_CTX_free(ctx_);
}

TlsChannel::TlsChannel(const TlsContext& context) {
  ssl_ = SSL_new(context.native());
  in_ = BIO_new(BIO_s_mem());
  out_ = BIO_new(BIO_s_mem());
  if (!ssl_ || !in_ || !out_) {
    SSL_free(ssl_);
    BIO_free(in_);
    BIO_free(out_);
    ERR_clear_error();
    throw std::bad_alloc();
  }
  // An empty input BIO means "wait for more", not end of file.
  BIO_set_mem_eof_return(in_, -1);
  BIO_set_mem_eof_return(out_, -1);
  SSL_set_bio(ssl_, in_, out_);
  SSL_set_accept_state(ssl_);
}

TlsChannel::~TlsChannel() {
  SSL_free(ssl_);  // frees both BIOs
}

void TlsChannel::feed(const char* data, std::size_t n) {
  while (n > 0) {
    const int chunk = static_cast<int>(std::min<std::size_t>(n, 1 << 30));
    const int w = BIO_write(in_, data, chunk);
    if (w <= 0) return;  // out of memory: the next read fails the handshake or record
    data += w;
    n -= static_cast<std::size_t>(w);
  }
}

TlsChannel::Result TlsChannel::read(char* out, std::size_t cap) {
  if (cap == 0) return {Status::want_input, 0};
  ERR_clear_error();
  const int r = SSL_read(ssl_, out, static_cast<int>(std::min<std::size_t>(cap, 1 << 30)));
  if (r > 0) return {Status::ok, static_cast<std::size_t>(r)};
  switch (SSL_get_error(ssl_, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:  // memory BIOs take everything: not expected
      return {Status::want_input, 0};
    case SSL_ERROR_ZERO_RETURN:
      return {Status::closed, 0};
    default:
      error_ = openssl_reason();
      ERR_clear_error();
      return {Status::error, 0};
  }
}

bool TlsChannel::write(const char* data, std::size_t n, std::string& out) {
  take_output(out);
  while (n > 0) {
    const std::size_t piece = std::min(n, kRecord);
    ERR_clear_error();
    const int w = SSL_write(ssl_, data, static_cast<int>(piece));
    if (w <= 0) {
      error_ = openssl_reason();
      ERR_clear_error();
      return false;
    }
    data += w;
    n -= static_cast<std::size_t>(w);
    take_output(out);
  }
  return true;
}

void TlsChannel::shutdown() {
  ERR_clear_error();
  if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::size_t TlsChannel::pending_output() const noexcept {
  return BIO_ctrl_pending(out_);
}

void TlsChannel::take_output(std::string& out) {
  const std::size_t pending = BIO_ctrl_pending(out_);
  if (pending == 0) return;
  const std::size_t at = out.size();
  out.resize(at + pending);
  const int r = BIO_read(out_, out.data() + at, static_cast<int>(pending));
  out.resize(at + static_cast<std::size_t>(std::max(r, 0)));
}

bool TlsChannel::has_buffered_input() const noexcept {
  return BIO_ctrl_pending(in_) > 0 || SSL_has_pending(ssl_) == 1;
}

namespace {
// A memory BIO that is empty but holds a buffer bigger than this is replaced.
constexpr std::size_t kTrimAbove = 4 * 1024;

bool worth_trimming(BIO* b) {
  if (BIO_ctrl_pending(b) != 0) return false;
  BUF_MEM* m = nullptr;
  BIO_get_mem_ptr(b, &m);
  return m && m->max > kTrimAbove;
}

BIO* fresh_bio() {
  BIO* b = BIO_new(BIO_s_mem());
  if (b) BIO_set_mem_eof_return(b, -1);
  return b;
}
}  // namespace

void TlsChannel::trim() noexcept {
  if (worth_trimming(in_)) {
    if (BIO* b = fresh_bio()) {
      SSL_set0_rbio(ssl_, b);  // frees the old one
      in_ = b;
    }
  }
  if (worth_trimming(out_)) {
    if (BIO* b = fresh_bio()) {
      SSL_set0_wbio(ssl_, b);
      out_ = b;
    }
  }
  ERR_clear_error();
}

bool TlsChannel::handshake_done() const noexcept {
  return SSL_is_init_finished(ssl_) != 0;
}

}  // namespace chat::transport
