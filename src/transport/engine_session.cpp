// EngineSession: Engine.IO v4 session state machine; see engine_session.hpp.
#include "transport/engine_session.hpp"

#include "transport/heartbeats.hpp"
#include "transport/server_impl.hpp"
#include "transport/sio_client.hpp"
#include "transport/worker_stats.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>

namespace chat::transport {

using protocol::eio::Packet;
using protocol::eio::PacketType;

namespace {
std::shared_ptr<const std::string> text_packet(char type, std::string_view data = {}) {
  std::string s;
  s.reserve(1 + data.size());
  s += type;
  s += data;
  return std::make_shared<const std::string>(std::move(s));
}
}  // namespace

EngineSession::EngineSession(ServerImpl& server, unsigned worker, std::string sid, Kind kind,
                             bool raw_echo, Handshake handshake)
    : server_(server),
      worker_(worker),
      sid_(std::move(sid)),
      kind_(kind),
      raw_echo_(raw_echo),
      handshake_(std::make_shared<const Handshake>(std::move(handshake))),
      tokens_(server.options().session_burst),
      tokens_at_(std::chrono::steady_clock::now()) {
  auto& s = stats();
  WorkerStats::add(s.connections_open, 1);
  WorkerStats::add(s.connections_total, 1);
  WorkerStats::add(kind_ == Kind::websocket ? s.websocket_open : s.polling_open, 1);
}

EngineSession::~EngineSession() = default;

WorkerStats& EngineSession::stats() {
  return server_.worker_stats(worker_);
}
boost::asio::io_context& EngineSession::context() {
  return server_.workers().at(worker_);
}

std::string EngineSession::open() {
  const auto& o = server_.options();
  nlohmann::json j;
  j["sid"] = sid_;
  j["upgrades"] = (kind_ == Kind::polling && o.allow_websocket)
                      ? nlohmann::json::array({"websocket"})
                      : nlohmann::json::array();
  j["pingInterval"] = o.ping_interval.count();
  j["pingTimeout"] = o.ping_timeout.count();
  j["maxPayload"] = o.max_payload;
  if (!raw_echo_) sio_ = std::make_unique<SioClient>(*this);
  schedule_ping();
  if (sio_) sio_->start();
  return "0" + j.dump();
}

// ------------------------------------------------------------------ outgoing

SendResult EngineSession::send(OutPacket p, bool droppable) {
  if (closed_) return SendResult::closed;
  const auto& o = server_.options();
  const auto size = p.data->size();
  // The bound covers what the WebSocket already holds too (frames in its
  // stream, pongs): together they are what this peer costs.
  const auto held = queued_bytes_ + (ws_ ? ws_->buffered_bytes() : 0);
  if (droppable && held > o.max_send_queue_bytes / 2) {
    WorkerStats::add(stats().dropped_packets_total, 1);
    return SendResult::dropped;
  }
  if (doomed_) return SendResult::closed;
  if (held > 0 && held + size > o.max_send_queue_bytes) {
    WorkerStats::add(stats().slow_reader_closes_total, 1);
    spdlog::info("session {} closed: slow reader ({} bytes held)", sid_, held);
    // The caller may be iterating over sockets (a broadcast): closing here
    // would run disconnect handlers inside its loop. Close on the next turn.
    doomed_ = true;
    boost::asio::post(context(), [self = shared_from_this()] { self->close("slow reader"); });
    return SendResult::closed;
  }
  queued_bytes_ += size;
  queue_.push_back(std::move(p));
  schedule_flush();
  return SendResult::ok;
}

void EngineSession::schedule_flush() {
  if (kind_ == Kind::websocket) {
    if (ws_) ws_->kick();
    return;
  }
  // Answer the parked GET on the next loop turn, so that everything queued in
  // this turn (a broadcast burst, a CONNECT reply and its first event) goes
  // in one response instead of one round trip each.
  if (!pending_get_ || flush_posted_) return;
  flush_posted_ = true;
  boost::asio::post(context(), [self = shared_from_this()] {
    self->flush_posted_ = false;
    if (!self->closed_) self->flush();
  });
}

void EngineSession::flush() {
  if (kind_ == Kind::websocket) {
    if (ws_) ws_->kick();
    return;
  }
  if (pending_get_ && !queue_.empty() && !upgrading_) {
    auto respond = std::move(pending_get_);
    pending_get_ = nullptr;
    respond(take_polling_body());
  }
}

std::string EngineSession::take_polling_body() {
  std::string body;
  body.reserve(queued_bytes_ + queue_.size() * 2);
  bool first = true;
  for (auto& p : queue_) {
    if (!first) body += protocol::eio::kRecordSeparator;
    first = false;
    protocol::eio::append_polling(body, *p.data, p.binary);
  }
  WorkerStats::add(stats().packets_out_total, queue_.size());
  WorkerStats::add(stats().bytes_out_total, body.size());
  queue_.clear();
  queued_bytes_ = 0;
  return body;
}

bool EngineSession::pop_for_ws(WsLink* link, OutPacket& out) {
  if (link != ws_.get() || queue_.empty()) return false;
  out = std::move(queue_.front());
  queue_.pop_front();
  queued_bytes_ -= out.data->size();
  WorkerStats::add(stats().packets_out_total, 1);
  WorkerStats::add(stats().bytes_out_total, out.data->size());
  return true;
}

// ------------------------------------------------------------------ rate budget

bool EngineSession::take_tokens(double cost) {
  const auto& o = server_.options();
  if (o.session_rate <= 0) return true;  // no limit
  const auto now = std::chrono::steady_clock::now();
  const std::chrono::duration<double> dt = now - tokens_at_;
  tokens_at_ = now;
  tokens_ = std::min(o.session_burst, tokens_ + dt.count() * o.session_rate);
  if (tokens_ < cost) return false;
  tokens_ -= cost;
  return true;
}

bool EngineSession::charge_invalid(const char* what) {
  WorkerStats::add(stats().invalid_packets_total, 1);
  if (take_tokens(1.0)) return true;
  protocol_error(std::string("too many invalid packets (last: ") + what + ")");
  return false;
}

// ------------------------------------------------------------------ heartbeat

void EngineSession::schedule_ping() {
  awaiting_pong_ = false;
  auto& hb = server_.heartbeats(worker_);
  if (heartbeat_slot_ == Heartbeats::kNoSlot) heartbeat_slot_ = hb.acquire(weak_from_this());
  hb.wait(Heartbeats::Kind::interval, heartbeat_slot_);
}

void EngineSession::on_heartbeat() {
  if (closed_) return;
  if (awaiting_pong_) {
    WorkerStats::add(stats().ping_timeouts_total, 1);
    close("ping timeout");
    return;
  }
  awaiting_pong_ = true;
  send(OutPacket{text_packet('2'), false}, false);
  if (closed_) return;
  server_.heartbeats(worker_).wait(Heartbeats::Kind::timeout, heartbeat_slot_);
}

// ------------------------------------------------------------------ incoming

void EngineSession::on_packet(Packet p) {
  if (closed_) return;
  auto& s = stats();
  WorkerStats::add(s.packets_in_total, 1);
  WorkerStats::add(s.bytes_in_total, p.data.size() + 1);
  switch (p.type) {
    case PacketType::pong:
      if (awaiting_pong_) schedule_ping();
      return;
    case PacketType::message:
      if (raw_echo_) {
        if (p.binary)
          send(OutPacket{std::make_shared<const std::string>(std::move(p.data)), true}, false);
        else
          send(OutPacket{text_packet('4', p.data), false}, false);
        return;
      }
      if (sio_) sio_->on_message(std::move(p.data), p.binary);
      return;
    case PacketType::close:
      close("transport close", true);
      return;
    case PacketType::noop:
      // A noop carries nothing; a body is only a way to make the server
      // read (and buffer) large frames for free.
      if (!p.data.empty()) protocol_error("noop with a body");
      return;
    case PacketType::ping:  // clients do not ping in v4
    case PacketType::open:
    case PacketType::upgrade:
      protocol_error("unexpected packet type");
      return;
  }
}

void EngineSession::protocol_error(const std::string& reason) {
  if (closed_) return;
  WorkerStats::add(stats().protocol_errors_total, 1);
  spdlog::debug("session {} protocol error: {}", sid_, reason);
  protocol_failed_ = true;
  close("parse error");
}

EngineSession::PollResult EngineSession::poll(PollResponder respond, const void* owner) {
  if (closed_ || kind_ != Kind::polling) return PollResult::bad_request;
  if (pending_get_) {
    // Two GETs at once: the first gets a close packet, the second 400.
    close("multiple polling requests");
    return PollResult::bad_request;
  }
  if (upgrading_) {
    respond("6");
    return PollResult::ok;
  }
  pending_get_ = std::move(respond);
  pending_owner_ = owner;
  if (!queue_.empty()) {
    flush();
  } else if (closing_) {
    close(close_reason_);  // the queue went out with the last GET: now "1"
  }
  return PollResult::ok;
}

void EngineSession::poll_aborted(const void* owner) {
  if (closed_ || !pending_get_ || pending_owner_ != owner) return;
  pending_get_ = nullptr;
  close("transport close");
}

EngineSession::PollResult EngineSession::post(std::string_view body) {
  if (closed_ || kind_ != Kind::polling) return PollResult::bad_request;
  for (auto record : protocol::eio::split_payload(body)) {
    auto p = protocol::eio::decode_text(record, true);
    if (!p) {
      protocol_error("invalid polling record");
      return PollResult::bad_request;
    }
    on_packet(std::move(*p));
    if (closed_) return protocol_failed_ ? PollResult::bad_request : PollResult::ok;
  }
  return PollResult::ok;
}

// ------------------------------------------------------------------ websocket

void EngineSession::attach_websocket(std::shared_ptr<WsLink> link) {
  ws_ = std::move(link);
}

bool EngineSession::attach_probe(std::shared_ptr<WsLink> link) {
  if (closed_ || kind_ != Kind::polling || probe_ || !server_.options().allow_websocket)
    return false;
  probe_ = std::move(link);
  // Only a session that upgrades needs this timer: made then, not for every session.
  if (!upgrade_timer_) upgrade_timer_ = std::make_unique<boost::asio::steady_timer>(context());
  upgrade_timer_->expires_after(server_.options().upgrade_timeout);
  upgrade_timer_->async_wait([self = weak_from_this()](const boost::system::error_code& ec) {
    auto s = self.lock();
    if (!s || ec || !s->probe_) return;
    s->upgrading_ = false;
    auto probe = std::move(s->probe_);
    probe->close();
  });
  return true;
}

void EngineSession::on_ws_frame(WsLink* link, std::string data, bool binary) {
  if (closed_) return;
  if (probe_ && link == probe_.get()) {
    if (!binary && data == "2probe") {
      probe_->send_direct(OutPacket{text_packet('3', "probe"), false});
      upgrading_ = true;
      if (pending_get_) {
        auto respond = std::move(pending_get_);
        pending_get_ = nullptr;
        respond("6");
      }
      return;
    }
    if (!binary && data == "5" && upgrading_) {
      if (upgrade_timer_) upgrade_timer_->cancel();
      if (pending_get_) {
        auto respond = std::move(pending_get_);
        pending_get_ = nullptr;
        respond("6");
      }
      ws_ = std::move(probe_);
      upgrading_ = false;
      kind_ = Kind::websocket;
      auto& s = stats();
      WorkerStats::add(s.polling_open, -1);
      WorkerStats::add(s.websocket_open, 1);
      WorkerStats::add(s.upgrades_total, 1);
      ws_->kick();
      if (sio_) sio_->upgraded();
      return;
    }
    // Anything else aborts the upgrade; the polling transport goes on.
    upgrading_ = false;
    if (upgrade_timer_) upgrade_timer_->cancel();
    auto probe = std::move(probe_);
    probe->close();
    return;
  }
  if (link != ws_.get()) return;
  if (binary) {
    on_packet(Packet{PacketType::message, std::move(data), true});
    return;
  }
  auto p = protocol::eio::decode_text(data, false);
  if (!p) return protocol_error("invalid websocket frame");
  on_packet(std::move(*p));
}

void EngineSession::on_ws_closed(WsLink* link, const char* reason) {
  if (probe_ && link == probe_.get()) {
    probe_.reset();
    upgrading_ = false;
    if (upgrade_timer_) upgrade_timer_->cancel();
    return;
  }
  if (link == ws_.get()) {
    ws_.reset();
    close(reason);
  }
}

// ------------------------------------------------------------------ closing

void EngineSession::close_gracefully(const std::string& reason) {
  if (closed_) return;
  close_reason_ = reason;
  closing_ = true;
  if (kind_ == Kind::websocket) {
    close(reason);  // the WebSocket flushes its queue before the close frame
    return;
  }
  // Polling: what is queued (a DISCONNECT, say) goes out first, and the close
  // packet in a later response. In one body the client would handle the
  // close before the Socket.IO packets it defers, and report "transport close".
  if (queue_.empty() && pending_get_) return close(reason);  // answers "1"
  // Give the client one polling round trip, then close anyway.
  if (!linger_timer_) linger_timer_ = std::make_unique<boost::asio::steady_timer>(context());
  linger_timer_->expires_after(std::chrono::seconds(2));
  linger_timer_->async_wait([self = weak_from_this(), reason](const boost::system::error_code& ec) {
    if (auto s = self.lock(); s && !ec) s->close(reason);
  });
}

void EngineSession::forget_socket(const std::string& nsp) {
  if (sio_) sio_->forget(nsp);
}

void EngineSession::shutdown(const std::string& reason) {
  // No Socket.IO DISCONNECT: the official client takes one as "io server
  // disconnect" and never retries. Closing the Engine.IO transport (a close
  // frame, or the "1" packet on polling) reads as "transport close", and the
  // client reconnects by itself, through the balancer, to another replica.
  close_gracefully(reason);
}

void EngineSession::close(const std::string& reason, bool client_initiated) {
  if (closed_) return;
  closed_ = true;
  if (heartbeat_slot_ != Heartbeats::kNoSlot) {
    server_.heartbeats(worker_).release(heartbeat_slot_);  // its waits no longer count
    heartbeat_slot_ = Heartbeats::kNoSlot;
  }
  if (linger_timer_) linger_timer_->cancel();
  if (upgrade_timer_) upgrade_timer_->cancel();
  auto self = shared_from_this();  // keep alive through the callbacks below
  if (pending_get_) {
    auto respond = std::move(pending_get_);
    pending_get_ = nullptr;
    respond(client_initiated ? "6" : "1");
  }
  if (probe_) {
    auto p = std::move(probe_);
    p->close();
  }
  const bool hard = reason == "slow reader";
  if (hard) {
    queue_.clear();
    queued_bytes_ = 0;
  }
  if (ws_ && hard) {
    auto w = std::move(ws_);
    w->abort();
  }
  if (ws_) {
    // What is still queued (a DISCONNECT, say) goes out before the close frame.
    auto w = std::move(ws_);
    for (auto& p : queue_) w->send_direct(std::move(p));
    queue_.clear();
    queued_bytes_ = 0;
    w->close();
  }
  if (sio_) sio_->on_close(reason);
  auto& s = stats();
  WorkerStats::add(s.connections_open, -1);
  WorkerStats::add(kind_ == Kind::websocket ? s.websocket_open : s.polling_open, -1);
  server_.remove_session(sid_);
}

}  // namespace chat::transport
