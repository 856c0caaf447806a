// Handlers of the protocol test mode; see conformance.hpp.
#include "server/conformance.hpp"

namespace chat::server {

using nlohmann::json;

void install_conformance(transport::Server& server) {
  for (const char* name : {"/", "/custom"}) {
    server.of(name).on_connection([](transport::SocketPtr socket, const json& auth) {
      socket->emit("auth", json::array({auth}));
      std::weak_ptr<transport::Socket> weak = socket;
      socket->on("message", [weak](const json& args, transport::Ack) {
        if (auto s = weak.lock()) s->emit("message-back", args);
      });
      socket->on("message-with-ack", [](const json& args, transport::Ack ack) {
        if (ack) ack(args);
      });
    });
  }
}

}  // namespace chat::server
