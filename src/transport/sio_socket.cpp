// SioSocket: one Socket.IO socket; see sio_socket.hpp.
#include "transport/sio_socket.hpp"

#include "protocol/socketio.hpp"
#include "transport/engine_session.hpp"
#include "transport/server_impl.hpp"
#include "transport/sio_client.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>

#include <atomic>

namespace chat::transport {

using nlohmann::json;
using protocol::sio::Type;

std::shared_ptr<const std::string> encode_event(std::string_view nsp, std::string_view event,
                                                const json& args) {
  std::string out = "42";
  if (!nsp.empty() && nsp != "/") {
    out += nsp;
    out += ',';
  }
  json data = json::array();
  data.push_back(event);
  for (const auto& a : args) data.push_back(a);
  out += data.dump(-1, ' ', false, json::error_handler_t::replace);
  return std::make_shared<const std::string>(std::move(out));
}

std::shared_ptr<const std::string> encode_event_text(std::string_view nsp, std::string_view event,
                                                     std::initializer_list<std::string_view> args) {
  const auto name = json(event).dump(-1, ' ', false, json::error_handler_t::replace);
  std::size_t size = 5 + nsp.size() + name.size() + args.size();
  for (auto a : args) size += a.size();
  std::string out;
  out.reserve(size);
  out += "42";
  if (!nsp.empty() && nsp != "/") {
    out += nsp;
    out += ',';
  }
  out += '[';
  out += name;
  for (auto a : args) {
    out += ',';
    out += a;
  }
  out += ']';
  return std::make_shared<const std::string>(std::move(out));
}

SioSocket::SioSocket(std::shared_ptr<EngineSession> session, std::string id, std::string nsp,
                     std::string pid, bool recovered, const NamespaceImpl* table,
                     std::shared_ptr<const void> data)
    : session_(session),
      id_(std::move(id)),
      nsp_(std::move(nsp)),
      pid_(std::move(pid)),
      recovered_(recovered),
      worker_(session->worker()),
      handshake_(session->shared_handshake()),
      table_(table),
      data_(std::move(data)) {}

std::string SioSocket::transport_name() const {
  auto s = session_.lock();
  return s ? s->transport_name() : "closed";
}

std::string SioSocket::client_id() const {
  auto s = session_.lock();
  if (!s) return "000000000000";
  // A hash of the session id: the same for every socket of the session,
  // and 48 bits of it cannot give the session id back.
  const auto h = std::hash<std::string>{}(s->sid());
  return fmt::format("{:012x}", h & 0xffffffffffffULL);
}

SocketObserver* SioSocket::observer() const {
  return table_ ? table_->observer() : nullptr;
}

void SioSocket::on(std::string event, EventHandler handler) {
  handlers_[std::move(event)] = std::move(handler);
}

void SioSocket::on_any(std::function<void(const std::string&, const json&, Ack)> h) {
  any_ = std::move(h);
}

void SioSocket::on_disconnect(std::function<void(const std::string&)> handler) {
  on_disconnect_ = std::move(handler);
}

SendResult SioSocket::send_packet(int type, json data, std::optional<std::uint64_t> ack_id,
                                  bool droppable) {
  auto s = session_.lock();
  if (!s || !connected_) return SendResult::closed;
  protocol::sio::Packet p;
  p.type = static_cast<Type>(type);
  p.nsp = nsp_;
  p.ack_id = ack_id;
  std::vector<std::string> attachments;
  if (protocol::sio::has_binary(data)) {
    attachments = protocol::sio::deconstruct(data);
    p.type = p.type == Type::ack ? Type::binary_ack : Type::binary_event;
    p.attachments = attachments.size();
  }
  p.data = std::move(data);
  auto r =
      s->send(OutPacket{std::make_shared<const std::string>("4" + protocol::sio::encode(p)), false},
              droppable);
  for (auto& a : attachments) {
    if (r != SendResult::ok) break;
    r = s->send(OutPacket{std::make_shared<const std::string>(std::move(a)), true}, false);
  }
  return r;
}

SendResult SioSocket::emit(std::string_view event, json args, bool droppable) {
  if (auto* o = observer(); o && connected_ && o->watches_events())
    o->event_sent(*this, event, args);
  json data = json::array();
  data.push_back(event);
  if (args.is_array()) {
    for (auto& a : args) data.push_back(std::move(a));
  } else if (!args.is_null()) {
    data.push_back(std::move(args));
  }
  return send_packet(static_cast<int>(Type::event), std::move(data), std::nullopt, droppable);
}

SendResult SioSocket::send_encoded(const std::shared_ptr<const std::string>& packet,
                                   bool droppable) {
  if (!connected_) return SendResult::closed;
  auto s = session_.lock();
  if (!s) return SendResult::closed;
  return s->send(OutPacket{packet, false}, droppable);
}

void SioSocket::disconnect(bool close) {
  auto s = session_.lock();
  if (!connected_) return;
  if (s) {
    s->send(OutPacket{std::make_shared<const std::string>(
                          "41" + (nsp_ == "/" ? std::string{} : nsp_ + ",")),
                      false},
            false);
  }
  auto self = shared_from_this();
  mark_disconnected("server namespace disconnect");
  if (s) {
    s->forget_socket(nsp_);
    if (close) s->close_gracefully("forced server close");
  }
}

bool SioSocket::take_tokens(double cost) {
  auto s = session_.lock();
  return s && s->take_tokens(cost);
}

void SioSocket::mark_disconnected(const std::string& reason) {
  if (!connected_) return;
  connected_ = false;
  auto handler = std::move(on_disconnect_);
  on_disconnect_ = nullptr;
  handlers_.clear();
  any_ = nullptr;
  if (auto* o = observer()) o->disconnected(*this, reason);
  if (handler) handler(reason);
}

Ack SioSocket::make_ack(std::uint64_t id) {
  auto used = std::make_shared<std::atomic<bool>>(false);
  std::weak_ptr<SioSocket> weak = std::static_pointer_cast<SioSocket>(shared_from_this());
  auto session = session_.lock();
  if (!session) return {};
  auto& ctx = session->context();
  return [weak, used, id, &ctx](json args) {
    if (used->exchange(true)) return;  // an ack is sent at most once
    if (!args.is_array()) args = json::array({std::move(args)});
    boost::asio::post(ctx, [weak, id, args = std::move(args)]() mutable {
      if (auto sock = weak.lock())
        sock->send_packet(static_cast<int>(Type::ack), std::move(args), id, false);
    });
  };
}

void SioSocket::dispatch(json data, std::optional<std::uint64_t> ack_id) {
  std::string event = data[0].is_string() ? data[0].get<std::string>() : data[0].dump();
  json args = json::array();
  for (std::size_t i = 1; i < data.size(); ++i) args.push_back(std::move(data[i]));
  Ack ack = ack_id ? make_ack(*ack_id) : Ack{};
  if (auto* o = observer(); o && o->watches_events()) o->event_received(*this, event, args);
  try {
    if (auto it = handlers_.find(event); it != handlers_.end()) {
      auto handler = it->second;  // the handler may replace itself
      handler(args, std::move(ack));
    } else if (any_) {
      auto any = any_;
      any(event, args, std::move(ack));
    } else if (table_) {
      table_->dispatch(*this, event, args, std::move(ack));
    }
  } catch (const std::exception& e) {
    // A handler bug must not take the server down; the client just gets no answer.
    spdlog::error("handler for \"{}\" on socket {} threw: {}", event, id_, e.what());
  }
}

}  // namespace chat::transport
