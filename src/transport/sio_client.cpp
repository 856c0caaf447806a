// SioClient: Socket.IO v5 on top of one Engine.IO session; see sio_client.hpp.
#include "transport/sio_client.hpp"

#include "transport/engine_session.hpp"
#include "transport/server_impl.hpp"
#include "transport/sio_socket.hpp"
#include "transport/worker_stats.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <atomic>

namespace chat::transport {

using nlohmann::json;
using protocol::sio::Packet;
using protocol::sio::Type;

SioClient::SioClient(EngineSession& session)
    : session_(session), window_start_(std::chrono::steady_clock::now()) {}

SioClient::~SioClient() = default;

void SioClient::start() {
  connect_timer_ = std::make_unique<boost::asio::steady_timer>(session_.context());
  connect_timer_->expires_after(session_.server().options().connect_timeout);
  connect_timer_->async_wait(
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

void SioClient::abort_binary(const char* why) {
  WorkerStats::add(session_.server().worker_stats(session_.worker()).binary_packet_aborts_total, 1);
  partial_.reset();
  attachments_.clear();
  if (binary_timer_) binary_timer_->cancel();
  session_.protocol_error(why);
}

void SioClient::on_message(std::string data, bool binary) {
  const auto& o = session_.server().options();
  protocol::sio::DecodeLimits limits;
  limits.max_attachments = o.max_attachments;
  if (binary) {
    if (!partial_) return session_.protocol_error("unexpected binary attachment");
    partial_bytes_ += data.size();
    if (partial_bytes_ > o.max_binary_packet) return abort_binary("binary packet over its budget");
    attachments_.push_back(std::move(data));
    if (attachments_.size() < partial_expected_) return;
    if (binary_timer_) binary_timer_->cancel();
    auto text = std::move(*partial_);
    partial_.reset();
    auto attachments = std::move(attachments_);
    attachments_.clear();
    // Validated when the header came: decoding it again cannot fail.
    auto decoded = protocol::sio::decode(text, limits);
    if (auto* err = std::get_if<protocol::sio::DecodeError>(&decoded))
      return session_.protocol_error(err->reason);
    auto p = std::get<Packet>(std::move(decoded));
    text = {};
    if (p.data && !protocol::sio::reconstruct(*p.data, attachments))
      return session_.protocol_error("bad attachment placeholder");
    return handle(std::move(p));
  }
  if (partial_) return session_.protocol_error("text packet while attachments were expected");
  auto decoded = protocol::sio::decode(data, limits);
  if (auto* err = std::get_if<protocol::sio::DecodeError>(&decoded))
    return session_.protocol_error(err->reason);
  auto p = std::get<Packet>(std::move(decoded));
  if ((p.type == Type::binary_event || p.type == Type::binary_ack) && p.attachments > 0) {
    // Hold the wire bytes, not the decoded tree (which can be many times
    // larger), within a byte budget and a deadline.
    if (data.size() > o.max_binary_packet) return abort_binary("binary packet over its budget");
    partial_expected_ = p.attachments;
    partial_bytes_ = data.size();
    partial_ = std::move(data);
    if (!binary_timer_)
      binary_timer_ = std::make_unique<boost::asio::steady_timer>(session_.context());
    binary_timer_->expires_after(o.binary_timeout);
    binary_timer_->async_wait(
        [self = session_.weak_from_this(), this](const boost::system::error_code& ec) {
          auto s = self.lock();
          if (!s || ec || s->closed() || !partial_) return;
          abort_binary("binary packet attachments late");
        });
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
      if (it == sockets_.end()) {
        session_.charge_invalid("DISCONNECT for a namespace not joined");
        return;
      }
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
      // The server does not ask clients for acks: tolerated, at a cost.
      session_.charge_invalid("ACK from a client");
      return;
    case Type::connect_error:
      return session_.protocol_error("CONNECT_ERROR from a client");
  }
}

void SioClient::on_connect(const Packet& p) {
  auto& server = session_.server();
  const std::string prefix = p.nsp == "/" ? "" : p.nsp + ",";
  if (!admit_connect(prefix)) return;
  auto* nsp = server.find_namespace(p.nsp);
  if (!nsp) {
    if (!session_.charge_invalid("CONNECT to an unknown namespace")) return;
    send_raw("4" + prefix + R"({"message":"Invalid namespace"})");
    return;
  }
  if (sockets_.count(p.nsp) || pending_.count(p.nsp)) {  // already connected or on its way
    session_.charge_invalid("CONNECT to a namespace already joined");
    return;
  }
  json auth = p.data ? *p.data : json::object();
  auto verdict = nsp->authorize(session_.handshake(), auth);
  if (verdict.refusal) return refuse(prefix, *verdict.refusal);
  const auto& hook = nsp->async_hook();
  if (!hook) return finish_connect(*nsp, p.nsp, auth, std::move(verdict.data));
  // The hook answers later, on any thread: the answer comes back to this
  // session's worker, and counts only if the session is still there.
  pending_.insert(p.nsp);
  auto& ctx = session_.context();
  std::weak_ptr<EngineSession> weak = session_.shared_from_this();
  auto once = std::make_shared<std::atomic<bool>>(false);
  hook(session_.handshake(), auth,
       [weak, &ctx, once, name = p.nsp, auth,
        earlier = std::move(verdict.data)](AuthResult r) mutable {
         if (once->exchange(true)) return;
         boost::asio::post(ctx, [weak, name = std::move(name), auth = std::move(auth),
                                 earlier = std::move(earlier), r = std::move(r)]() mutable {
           auto s = weak.lock();
           if (!s || s->closed() || !s->sio()) return;
           s->sio()->finish_async(name, auth, std::move(r), std::move(earlier));
         });
       });
}

void SioClient::finish_async(const std::string& name, const json& auth, AuthResult r,
                             std::shared_ptr<const void> earlier) {
  if (pending_.erase(name) == 0) return;
  auto* nsp = session_.server().find_namespace(name);
  if (!nsp) return;
  const std::string prefix = name == "/" ? "" : name + ",";
  if (r.refusal) return refuse(prefix, *r.refusal);
  finish_connect(*nsp, name, auth, r.data ? std::move(r.data) : std::move(earlier));
}

void SioClient::refuse(const std::string& prefix, const json& refusal) {
  if (!session_.charge_invalid("refused CONNECT")) return;
  send_raw("4" + prefix + refusal.dump());
}

void SioClient::finish_connect(NamespaceImpl& nsp, const std::string& name, const json& auth,
                               std::shared_ptr<const void> data) {
  auto& server = session_.server();
  const std::string prefix = name == "/" ? "" : name + ",";
  ever_connected_ = true;
  connect_timer_.reset();  // cancels the wait; a connected session keeps no timer here
  // Connection state recovery: the same id and pid back, or new ones (a pid
  // only where the namespace recovers).
  std::optional<std::string> sid = nsp.recover(session_.handshake(), auth);
  const bool recovered = sid.has_value();
  std::string pid = recovered        ? auth.at("pid").get<std::string>()
                    : nsp.recovers() ? server.new_id()
                                     : std::string();
  auto sock = std::make_shared<SioSocket>(session_.shared_from_this(),
                                          recovered ? std::move(*sid) : server.new_id(), name,
                                          std::move(pid), recovered, &nsp, std::move(data));
  sockets_[name] = sock;
  // {"sid": ...} first, then "pid", as Node's server writes it.
  std::string reply = R"({"sid":)" + json(sock->id()).dump();
  if (!sock->pid().empty()) reply += R"(,"pid":)" + json(sock->pid()).dump();
  send_raw("0" + prefix + reply + "}");
  nsp.connected(sock, auth);
}

void SioClient::upgraded() {
  auto* o = session_.server().observer();
  if (!o) return;
  for (auto& [nsp, sock] : sockets_) o->upgraded(*sock);
}

bool SioClient::admit_connect(const std::string& prefix) {
  const auto& o = session_.server().options();
  if (o.max_connects == 0) return true;
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= o.connect_window) {
    window_start_ = now;
    window_connects_ = 0;
    connect_refused_ = false;
  }
  if (++window_connects_ <= o.max_connects) return true;
  WorkerStats::add(session_.server().worker_stats(session_.worker()).connects_limited_total, 1);
  // Namespace reconnects on one session (each one a fresh socket, presence
  // and broadcasts): refused once with CONNECT_ERROR, then the session ends.
  if (connect_refused_) {
    session_.protocol_error("CONNECT over the per-session budget again");
    return false;
  }
  connect_refused_ = true;
  send_raw("4" + prefix + R"({"message":"Too many connects: slow down"})");
  return false;
}

void SioClient::forget(const std::string& nsp) {
  sockets_.erase(nsp);
}

void SioClient::on_close(const std::string& reason) {
  connect_timer_.reset();
  if (binary_timer_) binary_timer_->cancel();
  partial_.reset();
  attachments_.clear();
  pending_.clear();
  auto sockets = std::move(sockets_);
  sockets_.clear();
  for (auto& [nsp, sock] : sockets) sock->mark_disconnected(reason);
}

}  // namespace chat::transport
