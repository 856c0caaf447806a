// SioSocket: one Socket.IO socket (a client in one namespace); implements
// the transport::Socket interface the chat application uses.
#pragma once

#include "transport/api.hpp"

#include <memory>
#include <string>
#include <unordered_map>

namespace chat::transport {

class NamespaceImpl;

class EngineSession;

class SioSocket final : public Socket {
 public:
  // table: the namespace's event handlers (may be null), which outlives its sockets.
  SioSocket(std::shared_ptr<EngineSession> session, std::string id, std::string nsp,
            std::string pid = {}, bool recovered = false, const NamespaceImpl* table = nullptr,
            std::shared_ptr<const void> data = nullptr);

  const std::string& id() const override { return id_; }
  const std::string& nsp() const override { return nsp_; }
  unsigned worker() const override { return worker_; }
  const Handshake& handshake() const override { return *handshake_; }
  std::string transport_name() const override;
  bool connected() const override { return connected_; }
  const std::string& pid() const override { return pid_; }
  bool recovered() const override { return recovered_; }
  const std::shared_ptr<const void>& data() const override { return data_; }
  std::string client_id() const override;

  void on(std::string event, EventHandler handler) override;
  void on_any(std::function<void(const std::string&, const nlohmann::json&, Ack)> h) override;
  void on_disconnect(std::function<void(const std::string&)> handler) override;

  SendResult emit(std::string_view event, nlohmann::json args, bool droppable) override;
  SendResult send_encoded(const std::shared_ptr<const std::string>& packet,
                          bool droppable) override;
  void disconnect(bool close) override;
  bool take_tokens(double cost) override;

  // The Engine.IO session carrying this socket (null once it is gone).
  std::shared_ptr<EngineSession> session() const { return session_.lock(); }

  // ---- called by SioClient
  void dispatch(nlohmann::json data, std::optional<std::uint64_t> ack_id);
  void mark_disconnected(const std::string& reason);
  // Send a Socket.IO packet for this namespace (binary values become attachments).
  SendResult send_packet(int type, nlohmann::json data, std::optional<std::uint64_t> ack_id,
                         bool droppable);

 private:
  SocketObserver* observer() const;  // the server's, or null
  Ack make_ack(std::uint64_t id);

  std::weak_ptr<EngineSession> session_;
  std::string id_;
  std::string nsp_;
  std::string pid_;
  bool recovered_ = false;
  unsigned worker_;
  std::shared_ptr<const Handshake> handshake_;  // the session's
  bool connected_ = true;
  const NamespaceImpl* table_ = nullptr;
  std::shared_ptr<const void> data_;
  std::unordered_map<std::string, EventHandler> handlers_;
  std::function<void(const std::string&, const nlohmann::json&, Ack)> any_;
  std::function<void(const std::string&)> on_disconnect_;
};

}  // namespace chat::transport
