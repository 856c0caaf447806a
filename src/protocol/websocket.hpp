// WebSocket framing (RFC 6455): the reader of frames (a server's of client
// frames, or a client's of server frames), the encoders of server and client
// frames and the handshake's accept key. Pure: no I/O.
//
// The reader keeps nothing between calls unless a frame is cut by the end of
// a read or a message is fragmented: an idle connection holds no buffer. A
// frame is checked as soon as its header is in (reserved bits, opcode, mask,
// control frame rules, the message bound), so a frame announced over the
// bound is refused before its payload is read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>

namespace chat::protocol::ws {

enum class Opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

// Close codes (RFC 6455 7.4.1).
inline constexpr std::uint16_t kCloseNormal = 1000;
inline constexpr std::uint16_t kCloseGoingAway = 1001;
inline constexpr std::uint16_t kCloseProtocolError = 1002;
inline constexpr std::uint16_t kCloseNoStatus = 1005;  // never sent: "the close frame had no code"
inline constexpr std::uint16_t kCloseInvalidData = 1007;
inline constexpr std::uint16_t kCloseTooBig = 1009;

// The handshake: a Sec-WebSocket-Key is 16 bytes in base64 (24 characters);
// the answer's Sec-WebSocket-Accept is base64(SHA-1(key + the RFC's GUID)).
bool valid_client_key(std::string_view key);
std::string accept_key(std::string_view client_key);

// A server frame's header (FIN set, not masked) for a payload of len bytes:
// writes 2, 4 or 10 bytes to out and returns how many. compressed sets RSV1
// (a permessage-deflate message, deflate.hpp).
std::size_t frame_header(Opcode op, std::size_t len, unsigned char (&out)[10],
                         bool compressed = false);
// A whole server frame: header and payload.
std::string frame(Opcode op, std::string_view payload);
// A close frame with a code (and a reason, cut to fit a control frame).
std::string close_frame(std::uint16_t code, std::string_view reason = {});
// A whole client frame (FIN set), masked with key, appended to out.
void append_client_frame(std::string& out, Opcode op, std::string_view payload,
                         const unsigned char (&key)[4]);

// Whose frames a reader reads: a server reads masked client frames, a client
// reads server frames, which are never masked (RFC 6455 5.1).
enum class From : std::uint8_t { client, server };

// One complete message or control frame from the client. The payload is a
// view valid only during the callback.
struct Event {
  Opcode op = Opcode::text;  // text, binary, close, ping or pong
  std::string_view payload;  // the message; for close, the reason
  std::uint16_t code = 0;    // close only: the peer's code, kCloseNoStatus when none
};

struct Error {
  std::uint16_t code = 0;  // the close code to answer with
  const char* what = "";
};

class Reader {
 public:
  explicit Reader(std::size_t max_message, From from = From::client)
      : max_message_(max_message), from_(from) {}

  // Reads the frames in data[0..n) (after what was kept from the previous
  // call), calling on_event(const Event&) for each complete message and
  // control frame, in order; on_event returns false to stop reading (what is
  // left is dropped). Payloads are unmasked in place: data is scratch.
  // Returns false on a protocol error (error() says which); feed nothing
  // more after that.
  template <class OnEvent>
  bool feed(char* data, std::size_t n, OnEvent&& on_event) {
    using F = std::remove_reference_t<OnEvent>;
    struct Thunk {
      static bool call(void* f, const Event& e) { return (*static_cast<F*>(f))(e); }
    };
    return feed(data, n, &Thunk::call, const_cast<void*>(static_cast<const void*>(&on_event)));
  }

  // permessage-deflate negotiated (deflate.hpp): a data message whose first
  // frame has RSV1 set is compressed, and is inflated (bounded by the
  // message bound, on the thread's one Inflater) before on_event sees it.
  void set_deflate(bool on) noexcept { deflate_ = on; }

  bool failed() const noexcept { return error_.code != 0; }
  const Error& error() const noexcept { return error_; }
  // Bytes kept between calls: a cut frame and the fragments of a message.
  std::size_t held_bytes() const noexcept {
    return partial_ ? partial_->keep.size() + partial_->message.size() : 0;
  }
  std::size_t held_capacity() const noexcept {
    return partial_ ? sizeof(Partial) + partial_->keep.capacity() + partial_->message.capacity()
                    : 0;
  }

 private:
  using Callback = bool (*)(void*, const Event&);
  bool feed(char* data, std::size_t n, Callback cb, void* ctx);
  // Parses frames at the front of buf; returns the bytes used, or npos after
  // an error or a stop.
  std::size_t parse(char* buf, std::size_t n, Callback cb, void* ctx, bool& stop);
  bool fail(std::uint16_t code, const char* what);

  // Made only while something is kept: an idle reader is a pointer and a few
  // fields.
  struct Partial {
    std::string keep;     // a frame cut by the end of the previous read
    std::string message;  // fragments of a message not finished yet
  };
  Partial& partial();
  void release_if_empty();

  std::size_t max_message_;
  From from_;
  std::unique_ptr<Partial> partial_;
  Error error_;
  Opcode message_op_ = Opcode::continuation;  // text or binary while fragmented
  bool in_message_ = false;
  bool message_compressed_ = false;  // of the fragmented message
  bool deflate_ = false;
};

}  // namespace chat::protocol::ws
