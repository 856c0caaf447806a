// TLS for the main listener (--tls-cert / --tls-key), without asio::ssl.
//
// A TlsContext is the server's certificate chain and key (an SSL_CTX), loaded
// once at start-up. A TlsChannel is one connection's TLS session (an SSL
// over two memory BIOs): the connection does its own socket I/O and hands
// ciphertext in and out. So the session is plain data that travels with the
// socket's descriptor when an upgraded connection moves to another worker
// (HttpConnection releases the descriptor there), and the WebSocket path
// keeps its readiness waits, per-worker read buffer and gathered writes:
// it decrypts after the raw read and encrypts the gathered batch.
//
// Bounds: the channel holds no more than the caller feeds it between reads
// (callers feed at most one read's worth, then drain the plaintext), plus the
// one partial record OpenSSL keeps (at most ~16 KiB). Writes are sealed in
// record-sized pieces and the ciphertext taken out after each piece, so the
// outgoing BIO holds at most one record. Idle connections release OpenSSL's
// record buffers (SSL_MODE_RELEASE_BUFFERS) and the BIOs' (trim()).
//
// A channel is used by one thread at a time (the connection's owner); the
// context is shared read-only. OpenSSL's error queue is per thread: each call
// clears it first and leaves it empty.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

struct ssl_ctx_st;
struct ssl_st;
struct bio_st;

namespace chat::transport {

class TlsContext {
 public:
  // Loads a PEM certificate (the file may hold the chain, leaf first) and its
  // PEM private key. Throws std::runtime_error naming the file at fault: one
  // that cannot be read, is not PEM, or a key that does not match.
  TlsContext(const std::string& cert_file, const std::string& key_file);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  ssl_ctx_st* native() const noexcept { return ctx_; }

 private:
  ssl_ctx_st* ctx_ = nullptr;
};

class TlsChannel {
 public:
  // The server side of one connection (it waits for the ClientHello).
  explicit TlsChannel(const TlsContext& context);
  ~TlsChannel();
  TlsChannel(const TlsChannel&) = delete;
  TlsChannel& operator=(const TlsChannel&) = delete;

  enum class Status {
    ok,          // n plaintext bytes were read (n > 0)
    want_input,  // nothing more until more ciphertext is fed
    closed,      // the peer sent close_notify
    error,       // not TLS, a bad record or a failed handshake: drop the connection
  };
  struct Result {
    Status status;
    std::size_t n;
  };

  // Ciphertext from the peer.
  void feed(const char* data, std::size_t n);
  // Decrypt into out (cap bytes); drives the handshake as needed, which may
  // leave bytes to send (pending_output()).
  Result read(char* out, std::size_t cap);
  // Seal plaintext and append the ciphertext (and anything pending before
  // it) to out. False on failure (error() says why).
  bool write(const char* data, std::size_t n, std::string& out);
  // Queue a close_notify (pending_output() then holds it).
  void shutdown();

  // Ciphertext waiting to go out (handshake messages, alerts).
  std::size_t pending_output() const noexcept;
  // Append it to out.
  void take_output(std::string& out);
  // Ciphertext fed but not yet decrypted, or plaintext decrypted but not yet
  // read: the caller must read before waiting for the socket.
  bool has_buffered_input() const noexcept;
  bool handshake_done() const noexcept;
  // Give back the memory BIOs' buffers once they are empty and grew past a
  // few KiB (a burst), so an idle connection keeps none: call it when the
  // connection goes back to waiting.
  void trim() noexcept;
  // What went wrong last (an OpenSSL reason), for the logs.
  const std::string& error() const noexcept { return error_; }

 private:
  ssl_st* ssl_ = nullptr;
  bio_st* in_ = nullptr;   // owned by ssl_
  bio_st* out_ = nullptr;  // owned by ssl_
  std::string error_;
};

}  // namespace chat::transport
