// ConnectionHost: what a Connection reports to the thread that owns it.
#pragma once

#include <string_view>

namespace loadgen {

class Connection;

class ConnectionHost {
 public:
  virtual ~ConnectionHost() = default;
  // The Socket.IO CONNECT to namespace "/" was answered.
  virtual void on_open(Connection& c) = 0;
  // Any other Socket.IO packet (the Engine.IO message without its "4").
  virtual void on_packet(Connection& c, std::string_view sio) = 0;
  // Called once when the connection is gone. what is empty after a close we asked for.
  virtual void on_closed(Connection& c, std::string_view what) = 0;
};

}  // namespace loadgen
