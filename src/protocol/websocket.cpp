// WebSocket framing; see websocket.hpp.
#include "protocol/websocket.hpp"

#include "protocol/deflate.hpp"
#include "protocol/engineio.hpp"

#include <openssl/evp.h>
#include <simdjson.h>

#include <algorithm>
#include <cstring>

namespace chat::protocol::ws {

namespace {

constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

// One inflater and one output buffer per thread, for every connection
// (made on the first compressed message).
deflate::Inflater& thread_inflater() {
  thread_local deflate::Inflater inflater;
  return inflater;
}
std::string& inflate_buffer() {
  thread_local std::string buf;
  return buf;
}

bool is_control(Opcode op) {
  return (static_cast<unsigned>(op) & 0x8) != 0;
}

bool known_opcode(unsigned op) {
  return op == 0x0 || op == 0x1 || op == 0x2 || op == 0x8 || op == 0x9 || op == 0xA;
}

// Codes a peer may send in a close frame (RFC 6455 7.4; 1005, 1006 and 1015
// are never sent on the wire).
bool valid_close_code(std::uint16_t c) {
  if (c >= 3000 && c <= 4999) return true;
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014);
}

bool valid_utf8(std::string_view s) {
  return simdjson::validate_utf8(s.data(), s.size());
}

void unmask(char* p, std::size_t n, const unsigned char (&key)[4]) {
  // The key repeated over a word in memory order, so byte order does not matter.
  unsigned char kb[8];
  for (int j = 0; j < 8; ++j) kb[j] = key[j & 3];
  std::uint64_t mask_word;
  std::memcpy(&mask_word, kb, 8);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= mask_word;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<char>(p[i] ^ static_cast<char>(key[i & 3]));
}

}  // namespace

bool valid_client_key(std::string_view key) {
  if (key.size() != 24) return false;
  const auto bytes = eio::base64_decode(key);
  return bytes && bytes->size() == 16;
}

std::string accept_key(std::string_view client_key) {
  std::string input(client_key);
  input += kGuid;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(input.data(), input.size(), md, &len, EVP_sha1(), nullptr) != 1) return {};
  return eio::base64_encode(std::string_view(reinterpret_cast<const char*>(md), len));
}

std::size_t frame_header(Opcode op, std::size_t len, unsigned char (&out)[10], bool compressed) {
  std::size_t h = 0;
  out[h++] = static_cast<unsigned char>(0x80 | (compressed ? 0x40 : 0) | static_cast<unsigned>(op));
  if (len < 126) {
    out[h++] = static_cast<unsigned char>(len);
  } else if (len <= 0xFFFF) {
    out[h++] = 126;
    out[h++] = static_cast<unsigned char>(len >> 8);
    out[h++] = static_cast<unsigned char>(len);
  } else {
    out[h++] = 127;
    for (int shift = 56; shift >= 0; shift -= 8)
      out[h++] = static_cast<unsigned char>(static_cast<std::uint64_t>(len) >> shift);
  }
  return h;
}

std::string frame(Opcode op, std::string_view payload) {
  unsigned char header[10];
  const auto h = frame_header(op, payload.size(), header);
  std::string out(reinterpret_cast<const char*>(header), h);
  out.append(payload);
  return out;
}

std::string close_frame(std::uint16_t code, std::string_view reason) {
  std::string payload;
  payload += static_cast<char>(code >> 8);
  payload += static_cast<char>(code & 0xFF);
  // A control frame's payload is at most 125 bytes; do not cut a character.
  std::size_t n = std::min<std::size_t>(reason.size(), 123);
  while (n > 0 && n < reason.size() && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
  payload.append(reason.substr(0, n));
  return frame(Opcode::close, payload);
}

void append_client_frame(std::string& out, Opcode op, std::string_view payload,
                         const unsigned char (&key)[4]) {
  unsigned char header[10];
  const auto h = frame_header(op, payload.size(), header);
  header[1] |= 0x80;  // masked
  out.append(reinterpret_cast<const char*>(header), h);
  out.append(reinterpret_cast<const char*>(key), 4);
  const auto at = out.size();
  out.append(payload);
  unmask(out.data() + at, payload.size(), key);  // masking and unmasking are one XOR
}

Reader::Partial& Reader::partial() {
  if (!partial_) partial_ = std::make_unique<Partial>();
  return *partial_;
}

void Reader::release_if_empty() {
  if (partial_ && partial_->keep.empty() && partial_->message.empty()) partial_.reset();
}

bool Reader::fail(std::uint16_t code, const char* what) {
  error_ = Error{code, what};
  partial_.reset();
  return false;
}

bool Reader::feed(char* data, std::size_t n, Callback cb, void* ctx) {
  if (failed()) return false;
  bool stop = false;
  if (!partial_ || partial_->keep.empty()) {
    const auto used = parse(data, n, cb, ctx, stop);
    if (used == std::string::npos) {
      release_if_empty();
      return !failed();
    }
    if (used < n) partial().keep.assign(data + used, n - used);
    release_if_empty();
    return true;
  }
  // A frame was cut by the previous read: parse it with what came now.
  auto& keep = partial_->keep;
  keep.append(data, n);
  const auto used = parse(keep.data(), keep.size(), cb, ctx, stop);
  if (used == std::string::npos) {
    if (!failed()) {
      partial_->keep.clear();
      release_if_empty();
    }
    return !failed();
  }
  partial_->keep.erase(0, used);
  release_if_empty();
  return true;
}

std::size_t Reader::parse(char* buf, std::size_t n, Callback cb, void* ctx, bool& stop) {
  constexpr auto npos = std::string::npos;
  std::size_t pos = 0;
  for (;;) {
    const auto* p = reinterpret_cast<const unsigned char*>(buf + pos);
    const std::size_t avail = n - pos;
    if (avail < 2) return pos;
    const bool fin = (p[0] & 0x80) != 0;
    const unsigned opbits = p[0] & 0x0F;
    if (!known_opcode(opbits)) return fail(kCloseProtocolError, "unknown opcode"), npos;
    const auto op = static_cast<Opcode>(opbits);
    // RSV1 marks a compressed message, on its first frame only (RFC 7692 6).
    const bool compressed = (p[0] & 0x40) != 0;
    if ((p[0] & 0x30) != 0 ||
        (compressed && (!deflate_ || is_control(op) || op == Opcode::continuation)))
      return fail(kCloseProtocolError, "reserved bits set"), npos;
    const bool masked = (p[1] & 0x80) != 0;
    if (from_ == From::client && !masked)
      return fail(kCloseProtocolError, "client frame not masked"), npos;
    if (from_ == From::server && masked)
      return fail(kCloseProtocolError, "server frame masked"), npos;
    std::uint64_t len = p[1] & 0x7F;
    std::size_t h = 2;
    if (len == 126) {
      if (avail < 4) return pos;
      len = (static_cast<std::uint64_t>(p[2]) << 8) | p[3];
      h = 4;
    } else if (len == 127) {
      if (avail < 10) return pos;
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
      if (len >> 63) return fail(kCloseProtocolError, "frame length over 63 bits"), npos;
      h = 10;
    }
    if (is_control(op)) {
      if (!fin) return fail(kCloseProtocolError, "fragmented control frame"), npos;
      if (len > 125) return fail(kCloseProtocolError, "control frame over 125 bytes"), npos;
    } else {
      if (op == Opcode::continuation && !in_message_)
        return fail(kCloseProtocolError, "continuation without a message"), npos;
      if (op != Opcode::continuation && in_message_)
        return fail(kCloseProtocolError, "new message inside a fragmented one"), npos;
      // Refused on the header alone: nothing over the bound is ever read in.
      const std::size_t have = partial_ ? partial_->message.size() : 0;
      if (len > max_message_ || have + len > max_message_)
        return fail(kCloseTooBig, "message too big"), npos;
    }
    unsigned char key[4];
    if (masked) {
      if (avail - h < 4) return pos;
      std::memcpy(key, p + h, 4);
      h += 4;
    }
    if (avail - h < len) return pos;
    char* payload = buf + pos + h;
    const auto size = static_cast<std::size_t>(len);
    if (masked) unmask(payload, size, key);
    pos += h + size;

    Event ev;
    if (is_control(op)) {
      ev.op = op;
      if (op == Opcode::close) {
        if (size == 1) return fail(kCloseProtocolError, "close frame of one byte"), npos;
        ev.code = kCloseNoStatus;
        if (size >= 2) {
          ev.code = static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                               static_cast<unsigned char>(payload[1]));
          if (!valid_close_code(ev.code)) return fail(kCloseProtocolError, "bad close code"), npos;
          ev.payload = std::string_view(payload + 2, size - 2);
          if (!valid_utf8(ev.payload))
            return fail(kCloseInvalidData, "close reason not UTF-8"), npos;
        }
      } else {
        ev.payload = std::string_view(payload, size);
      }
      if (!cb(ctx, ev)) return stop = true, npos;
      continue;
    }
    if (!fin) {
      // A fragment: kept until the message's last one.
      if (!in_message_) {
        in_message_ = true;
        message_op_ = op;
        message_compressed_ = compressed;
      }
      partial().message.append(payload, size);
      continue;
    }
    bool inflate = compressed;
    if (in_message_) {
      auto& message = partial().message;
      message.append(payload, size);
      ev.op = message_op_;
      ev.payload = message;
      inflate = message_compressed_;
    } else {
      ev.op = op;
      ev.payload = std::string_view(payload, size);
    }
    if (inflate) {
      auto& inflated = inflate_buffer();
      switch (thread_inflater().decompress(ev.payload, max_message_, inflated)) {
        case deflate::Inflater::Result::ok:
          break;
        case deflate::Inflater::Result::too_big:
          return fail(kCloseTooBig, "message too big (inflated)"), npos;
        case deflate::Inflater::Result::bad_data:
          return fail(kCloseInvalidData, "compressed message does not inflate"), npos;
      }
      ev.payload = inflated;
    }
    if (ev.op == Opcode::text && !valid_utf8(ev.payload))
      return fail(kCloseInvalidData, "text message not UTF-8"), npos;
    const bool go_on = cb(ctx, ev);
    // A large inflated message's buffer is not kept for the thread's next one.
    if (inflate && inflate_buffer().capacity() > 64 * 1024) std::string().swap(inflate_buffer());
    if (in_message_) {
      in_message_ = false;
      // The message's buffer is not kept for the next one (released at the
      // end of feed() unless a cut frame is kept as well).
      std::string().swap(partial_->message);
    }
    if (!go_on) return stop = true, npos;
  }
}

}  // namespace chat::protocol::ws
