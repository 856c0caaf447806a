// permessage-deflate and gzip; see deflate.hpp.
#include "protocol/deflate.hpp"

#include <zlib.h>

#include <cstring>
#include <new>
#include <set>
#include <vector>

namespace chat::protocol::deflate {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto p = s.find(sep);
    out.push_back(trim(s.substr(0, p)));
    if (p == std::string_view::npos) return out;
    s.remove_prefix(p + 1);
  }
}

// 8 to 15, as a token or a quoted string (RFC 7692 7.1.2).
bool window_bits(std::string_view v, bool& fifteen) {
  if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
  if (v.empty() || v.size() > 2 || v.front() == '0') return false;
  int n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + (c - '0');
  }
  fifteen = n == 15;
  return n >= 8 && n <= 15;
}

// One offer: "permessage-deflate; param[=value]; ...". Acceptable when every
// parameter is known, appears once and has a valid value.
bool acceptable(std::string_view offer) {
  const auto parts = split(offer, ';');
  if (parts.empty() || parts[0] != "permessage-deflate") return false;
  std::set<std::string_view> seen;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    const auto name = trim(parts[i].substr(0, eq));
    const auto value =
        eq == std::string_view::npos ? std::string_view{} : trim(parts[i].substr(eq + 1));
    const bool has_value = eq != std::string_view::npos;
    if (!seen.insert(name).second) return false;
    bool fifteen = false;
    if (name == "server_no_context_takeover" || name == "client_no_context_takeover") {
      if (has_value) return false;
    } else if (name == "server_max_window_bits") {
      // Our frames are made with a 15-bit window, shared by every receiver.
      if (!has_value || !window_bits(value, fifteen) || !fifteen) return false;
    } else if (name == "client_max_window_bits") {
      // No value: the client may be told a size; we inflate any window.
      if (has_value && !window_bits(value, fifteen)) return false;
    } else {
      return false;
    }
  }
  return true;
}

void check(int rc) {
  if (rc == Z_MEM_ERROR) throw std::bad_alloc();
}

}  // namespace

std::optional<std::string> negotiate(std::string_view offers) {
  for (const auto offer : split(offers, ','))
    if (acceptable(offer))
      return std::string(
          "permessage-deflate; server_no_context_takeover; client_no_context_takeover");
  return std::nullopt;
}

struct Deflater::State {
  z_stream z{};
  bool ok = false;
  State(int level, int window_bits) {
    ok = deflateInit2(&z, level, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK;
    if (!ok) throw std::bad_alloc();
  }
  ~State() {
    if (ok) deflateEnd(&z);
  }
  // Compress in into out with flush; the stream is reset first.
  void run(std::string_view in, std::string& out, int flush) {
    check(deflateReset(&z));
    out.resize(deflateBound(&z, static_cast<uLong>(in.size())) + 16);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    std::size_t used = 0;
    for (;;) {
      z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
      z.avail_out = static_cast<uInt>(out.size() - used);
      const int rc = ::deflate(&z, flush);
      check(rc);
      used = out.size() - z.avail_out;
      if (z.avail_in == 0 && z.avail_out != 0 && (flush != Z_FINISH || rc == Z_STREAM_END)) break;
      out.resize(out.size() * 2);
    }
    out.resize(used);
  }
};

Deflater::Deflater(int level) : raw_(std::make_unique<State>(level, -15)), level_(level) {}
Deflater::~Deflater() = default;

std::string Deflater::compress(std::string_view message) {
  std::string out;
  raw_->run(message, out, Z_SYNC_FLUSH);
  // A sync flush ends with an empty stored block, 00 00 ff ff: taken off.
  if (out.size() >= 4 && std::memcmp(out.data() + out.size() - 4, "\x00\x00\xff\xff", 4) == 0)
    out.resize(out.size() - 4);
  return out;
}

std::string Deflater::gzip(std::string_view body) {
  if (!gz_) gz_ = std::make_unique<State>(level_, 15 + 16);
  std::string out;
  gz_->run(body, out, Z_FINISH);
  return out;
}

struct Inflater::State {
  z_stream z{};
  bool ok = false;
  State() {
    ok = inflateInit2(&z, -15) == Z_OK;
    if (!ok) throw std::bad_alloc();
  }
  ~State() {
    if (ok) inflateEnd(&z);
  }
};

Inflater::Inflater() : z_(std::make_unique<State>()) {}
Inflater::~Inflater() = default;

Inflater::Result Inflater::decompress(std::string_view payload, std::size_t max_out,
                                      std::string& out) {
  auto& z = z_->z;
  check(inflateReset(&z));
  out.clear();
  static const unsigned char kTail[4] = {0x00, 0x00, 0xff, 0xff};
  char chunk[16 * 1024];
  // The payload, then the empty block the sender took off (RFC 7692 7.2.2).
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(payload.data()));
  z.avail_in = static_cast<uInt>(payload.size());
  bool tail = false;
  for (;;) {
    z.next_out = reinterpret_cast<Bytef*>(chunk);
    z.avail_out = sizeof chunk;
    const int rc = inflate(&z, Z_SYNC_FLUSH);
    check(rc);
    const std::size_t n = sizeof chunk - z.avail_out;
    if (out.size() + n > max_out) return Result::too_big;
    out.append(chunk, n);
    if (rc == Z_STREAM_END) return Result::ok;  // a final block: the message ends there
    if (rc != Z_OK && rc != Z_BUF_ERROR) return Result::bad_data;
    if (z.avail_out == 0) continue;  // more output may be pending
    if (z.avail_in != 0) return Result::bad_data;
    if (tail) break;
    tail = true;
    z.next_in = const_cast<Bytef*>(kTail);
    z.avail_in = sizeof kTail;
  }
  return Result::ok;
}

}  // namespace chat::protocol::deflate
