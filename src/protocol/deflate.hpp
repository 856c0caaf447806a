// permessage-deflate (RFC 7692) as this server uses it: the negotiation, and
// a compressor and a decompressor that keep no context between messages.
//
// The server always answers with server_no_context_takeover and
// client_no_context_takeover: every message is compressed on its own, in
// both directions. That is what lets one compressed frame be shared by
// every receiver of a broadcast (compressed once per worker, not once per
// connection), and lets a connection hold no zlib state at all: a worker's
// one Deflater and one Inflater serve all its connections. The price is a
// lower ratio for small messages, which is why only messages above a
// threshold are compressed (each message says whether it is).
//
// Also gzip for HTTP bodies (long-polling responses). Pure: zlib, no I/O.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace chat::protocol::deflate {

// The Sec-WebSocket-Extensions answer to a client's offers (the header's
// value, possibly several offers), or nullopt when none is acceptable
// (not permessage-deflate, unknown or repeated parameters, bad values, or
// a server_max_window_bits below 15, which a shared compressor cannot honour).
std::optional<std::string> negotiate(std::string_view offers);

// Raw deflate, one message at a time. Not thread-safe: one per thread.
class Deflater {
 public:
  explicit Deflater(int level = 6);
  ~Deflater();
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  // The message compressed as RFC 7692 7.2.1 says (the final empty block's
  // 00 00 ff ff taken off). Throws std::bad_alloc if zlib has no memory.
  std::string compress(std::string_view message);
  // A whole gzip stream (RFC 1952), for Content-Encoding: gzip.
  std::string gzip(std::string_view body);

 private:
  struct State;
  std::unique_ptr<State> raw_, gz_;  // gz_ made on first use
  int level_;
};

// Raw inflate, one message at a time, bounded. Not thread-safe: one per thread.
class Inflater {
 public:
  Inflater();
  ~Inflater();
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  enum class Result { ok, too_big, bad_data };
  // Decompress a message's payload into out (replaced). too_big as soon as
  // the output would pass max_out: a small frame cannot grow into a large
  // allocation.
  Result decompress(std::string_view payload, std::size_t max_out, std::string& out);

 private:
  struct State;
  std::unique_ptr<State> z_;
};

}  // namespace chat::protocol::deflate
