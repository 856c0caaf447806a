// libFuzzer target: every decoder of the codec (Engine.IO, Socket.IO,
// WebSocket frames) must survive any input without crashing, throwing or
// looping, and what decodes must re-encode.
#include "protocol/deflate.hpp"
#include "protocol/engineio.hpp"
#include "protocol/socketio.hpp"
#include "protocol/websocket.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace eio = chat::protocol::eio;
  namespace sio = chat::protocol::sio;
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Polling body -> records -> Engine.IO packets -> Socket.IO packets.
  for (auto record : eio::split_payload(input)) {
    auto packet = eio::decode_text(record, true);
    if (!packet || packet->binary || packet->type != eio::PacketType::message) continue;
    auto decoded = sio::decode(packet->data);
    if (auto* p = std::get_if<sio::Packet>(&decoded)) {
      // Placeholders must never index outside the attachments given.
      if (p->data) {
        std::vector<std::string> attachments(p->attachments, std::string("x"));
        auto copy = *p->data;
        sio::reconstruct(copy, attachments);
      }
      // A decoded packet re-encodes to something that decodes again.
      const auto again = sio::encode(*p);
      if (std::holds_alternative<sio::DecodeError>(sio::decode(again))) std::abort();
    }
  }
  // WebSocket text frame.
  (void)eio::decode_text(input, false);
  // WebSocket frames, cut in two where the first byte says, read as a server
  // reads client frames and as a client (the load generator) reads server
  // frames: whatever the bytes, the reader never holds more than one frame
  // over its bound, and a payload it hands out is within the bound.
  // With permessage-deflate too: an inflated message stays within the bound.
  using From = chat::protocol::ws::From;
  const std::pair<From, bool> readers[] = {
      {From::client, false}, {From::server, false}, {From::client, true}};
  for (const auto& [from, deflate] : readers) {
    constexpr std::size_t kMax = 4096;
    chat::protocol::ws::Reader reader(kMax, from);
    reader.set_deflate(deflate);
    std::string bytes(input);
    const std::size_t cut =
        bytes.empty() ? 0 : static_cast<unsigned char>(bytes[0]) % (bytes.size() + 1);
    auto check = [&](const chat::protocol::ws::Event& e) {
      if (e.payload.size() > kMax) std::abort();
      return true;
    };
    if (reader.feed(bytes.data(), cut, check))
      (void)reader.feed(bytes.data() + cut, bytes.size() - cut, check);
    if (reader.held_bytes() > 2 * kMax + 14) std::abort();
  }
  // Inflating any bytes stays within the bound; what is compressed inflates back.
  {
    static chat::protocol::deflate::Inflater inflater;
    static chat::protocol::deflate::Deflater deflater;
    std::string out;
    if (inflater.decompress(input, 4096, out) == chat::protocol::deflate::Inflater::Result::ok &&
        out.size() > 4096)
      std::abort();
    const auto z = deflater.compress(input);
    if (inflater.decompress(z, input.size(), out) !=
            chat::protocol::deflate::Inflater::Result::ok ||
        out != input)
      std::abort();
    (void)chat::protocol::deflate::negotiate(input);
  }
  // Base64 must round-trip what it decodes.
  if (auto bytes = eio::base64_decode(input)) {
    if (eio::base64_decode(eio::base64_encode(*bytes)) != *bytes) std::abort();
  }
  return 0;
}
