// SioClient: Socket.IO v5 on top of one Engine.IO session; see sio_client.hpp.
#include "transport/sio_client.hpp"

#include "transport/engine_session.hpp"
#include "transport/server_impl.hpp"
#include "transport/sio_socket.hpp"

#include <spdlog/spdlog.h>

namespace chat::transport {

using nlohmann::json;
using protocol::sio::Packet;
using protocol::sio::Type;

SioClient::SioClient(EngineSession& session)
    : session_(session), connect_timer_(session.context()) {}

SioClient::~SioClient() = default;

void SioClient::start() {
  connect_timer_.expires_after(session_.server().options().connect_timeout);
  connect_timer_.async_wait(
      [self = session_.weak_from_this(), this](const boost::system::error_code& ec) {
        auto s = self.lock();
        if (!s || ec || ever_connected_ || s->closed()) return;
        spdlog::debug("session {}: no CONNECT in time", s->sid());
        s->close("connect timeout");
      });
}

void SioClient::send_raw(std::string text) {
  session_.send(OutPacket{std::make_shared<const std::string>("4" + text), false}, false);
}

void SioClient::on_message(std::string data, bool binary) {
  if (binary) {
    if (!partial_) return session_.protocol_error("unexpected binary attachment");
    attachments_.push_back(std::move(data));
    if (attachments_.size() < partial_->attachments) return;
    auto p = std::move(*partial_);
    partial_.reset();
    if (p.data && !protocol::sio::reconstruct(*p.data, attachments_)) {
      attachments_.clear();
      return session_.protocol_error("bad attachment placeholder");
    }
    attachments_.clear();
    return handle(std::move(p));
  }
  if (partial_) return session_.protocol_error("text packet while attachments were expected");
  protocol::sio::DecodeLimits limits;
  limits.max_attachments = session_.server().options().max_attachments;
  auto decoded = protocol::sio::decode(data, limits);
  if (auto* err = std::get_if<protocol::sio::DecodeError>(&decoded))
    return session_.protocol_error(err->reason);
  auto p = std::get<Packet>(std::move(decoded));
  if ((p.type == Type::binary_event || p.type == Type::binary_ack) && p.attachments > 0) {
    partial_ = std::move(p);
    return;
  }
  handle(std::move(p));
}

void SioClient::handle(Packet p) {
  switch (p.type) {
    case Type::connect:
      return on_connect(p);
    case Type::disconnect: {
      auto it = sockets_.find(p.nsp);
      if (it == sockets_.end()) return;
      auto sock = it->second;
      sockets_.erase(it);
      sock->mark_disconnected("client namespace disconnect");
      return;
    }
    case Type::event:
    case Type::binary_event: {
      auto it = sockets_.find(p.nsp);
      if (it == sockets_.end()) return session_.protocol_error("event for a namespace not joined");
      auto sock = it->second;  // the handler may disconnect it
      sock->dispatch(std::move(*p.data), p.ack_id);
      return;
    }
    case Type::ack:
    case Type::binary_ack:
      return;  // the server does not ask clients for acks
    case Type::connect_error:
      return session_.protocol_error("CONNECT_ERROR from a client");
  }
}

void SioClient::on_connect(const Packet& p) {
  auto& server = session_.server();
  const std::string prefix = p.nsp == "/" ? "" : p.nsp + ",";
  auto* nsp = server.find_namespace(p.nsp);
  if (!nsp) {
    send_raw("4" + prefix + R"({"message":"Invalid namespace"})");
    return;
  }
  if (sockets_.count(p.nsp)) return;  // already connected: nothing to do
  const json auth = p.data ? *p.data : json::object();
  if (auto refusal = nsp->authorize(session_.handshake(), auth)) {
    send_raw("4" + prefix + refusal->dump());
    return;
  }
  ever_connected_ = true;
  connect_timer_.cancel();
  auto sock = std::make_shared<SioSocket>(session_.shared_from_this(), server.new_id(), p.nsp);
  sockets_[p.nsp] = sock;
  send_raw("0" + prefix + json{{"sid", sock->id()}}.dump());
  nsp->connected(sock, auth);
}

void SioClient::forget(const std::string& nsp) {
  sockets_.erase(nsp);
}

void SioClient::on_close(const std::string& reason) {
  connect_timer_.cancel();
  auto sockets = std::move(sockets_);
  sockets_.clear();
  for (auto& [nsp, sock] : sockets) sock->mark_disconnected(reason);
}

}  // namespace chat::transport
