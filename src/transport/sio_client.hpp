// SioClient: the Socket.IO layer of one Engine.IO session: namespace
// connections, packet decoding, binary attachment reassembly, and the
// connect timeout.
//
// Bounds: a binary packet waiting for its attachments holds its wire bytes
// only (the header text, decoded again when complete), at most
// Options::max_binary_packet of them, for at most Options::binary_timeout.
// CONNECTs are limited to Options::max_connects per connect_window.
#pragma once

#include "protocol/socketio.hpp"
#include "transport/api.hpp"

#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace chat::transport {

class EngineSession;
class NamespaceImpl;
class SioSocket;

class SioClient {
 public:
  explicit SioClient(EngineSession& session);
  ~SioClient();

  void start();  // arm the connect timeout
  void on_message(std::string data, bool binary);
  void on_close(const std::string& reason);

  // A socket left its namespace from the server side.
  void forget(const std::string& nsp);
  // The session moved to WebSocket: tell the observer about each socket.
  void upgraded();
  // The answer of a namespace's asynchronous CONNECT hook (on this worker).
  void finish_async(const std::string& name, const nlohmann::json& auth, AuthResult r,
                    std::shared_ptr<const void> earlier);

 private:
  void handle(protocol::sio::Packet p);
  void on_connect(const protocol::sio::Packet& p);
  void finish_connect(NamespaceImpl& nsp, const std::string& name, const nlohmann::json& auth,
                      std::shared_ptr<const void> data);
  void refuse(const std::string& prefix, const nlohmann::json& refusal);
  void send_raw(std::string text);
  void abort_binary(const char* why);
  // A CONNECT over the per-session budget: false when it must be refused.
  bool admit_connect(const std::string& prefix);

  EngineSession& session_;
  std::map<std::string, std::shared_ptr<SioSocket>> sockets_;
  std::set<std::string> pending_;  // namespaces whose asynchronous CONNECT hook has not answered
  std::unique_ptr<boost::asio::steady_timer> connect_timer_;  // until the first CONNECT
  bool ever_connected_ = false;
  // Binary packet waiting for its attachments: its header text (validated),
  // how many attachments it announced, and the bytes held.
  std::optional<std::string> partial_;
  std::size_t partial_expected_ = 0;
  std::size_t partial_bytes_ = 0;
  std::vector<std::string> attachments_;
  std::unique_ptr<boost::asio::steady_timer> binary_timer_;  // made by the first binary packet
  // CONNECT budget: connects in the current window, refusals since.
  std::chrono::steady_clock::time_point window_start_;
  std::size_t window_connects_ = 0;
  bool connect_refused_ = false;
};

}  // namespace chat::transport
