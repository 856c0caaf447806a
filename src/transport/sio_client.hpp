// SioClient: the Socket.IO layer of one Engine.IO session: namespace
// connections, packet decoding, binary attachment reassembly, and the
// connect timeout.
#pragma once

#include "protocol/socketio.hpp"

#include <boost/asio/steady_timer.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace chat::transport {

class EngineSession;
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

 private:
  void handle(protocol::sio::Packet p);
  void on_connect(const protocol::sio::Packet& p);
  void send_raw(std::string text);

  EngineSession& session_;
  std::map<std::string, std::shared_ptr<SioSocket>> sockets_;
  boost::asio::steady_timer connect_timer_;
  bool ever_connected_ = false;
  // Binary packet waiting for its attachments.
  std::optional<protocol::sio::Packet> partial_;
  std::vector<std::string> attachments_;
};

}  // namespace chat::transport
