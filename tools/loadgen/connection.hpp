// Connection: one Socket.IO v5 client over Engine.IO v4 WebSocket transport.
//
// Only the part of the protocol a load generator needs: open, CONNECT to "/",
// answer pings, send text packets, hand received packets to the host. The
// sockets and the framing live behind create() in connection.cpp.
// Every method must be called on the thread running the io_context.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace loadgen {

class ConnectionHost;
struct Counters;

class Connection {
 public:
  struct Endpoint {
    std::string host;  // numeric IPv4 address of the server
    std::uint16_t port = 0;
    std::string source;    // numeric local address to bind to before connecting
    bool deflate = false;  // offer permessage-deflate (and inflate what comes compressed)
  };

  static std::shared_ptr<Connection> create(boost::asio::io_context& ioc, ConnectionHost& host,
                                            Counters& counters, Endpoint endpoint);
  virtual ~Connection() = default;

  virtual void start() = 0;
  // Send one Engine.IO packet text (e.g. "42[...]"). Queued; one write in flight.
  virtual void send(std::string packet) = 0;
  // WebSocket close handshake; on_closed follows with an empty reason.
  virtual void close() = 0;
  // Drop the TCP connection at once, no callback.
  virtual void abort() = 0;

  std::size_t slot = 0;  // the host's index for this connection
};

}  // namespace loadgen
