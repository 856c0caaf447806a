// AmqpConnection: one rabbitmq-c connection with channel 1 open.
//
// rabbitmq-c is blocking and not thread-safe, so each connection belongs to
// exactly one thread (the bus's publisher or consumer). This wrapper does the
// parts both need: URL parsing, a bounded connect and login, heartbeats, the
// RPC timeout, readable error strings, and a way for another thread to break
// a call that hangs on a frozen broker (interrupt()).
#pragma once

#include <amqp.h>

#include <chrono>
#include <mutex>
#include <string>
#include <vector>

namespace chat::bus {

struct AmqpUrl {
  std::string host = "localhost";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
};

// Parses amqp://user:pass@host:port/vhost. Throws std::invalid_argument (start-up only).
AmqpUrl parse_amqp_url(const std::string& url);
// Several URLs separated by commas (the nodes of a RabbitMQ cluster); at least one.
std::vector<AmqpUrl> parse_amqp_urls(const std::string& list);

class AmqpConnection {
 public:
  AmqpConnection() = default;
  ~AmqpConnection();
  AmqpConnection(const AmqpConnection&) = delete;
  AmqpConnection& operator=(const AmqpConnection&) = delete;

  // Connect, log in, open channel 1. On failure returns false with error set
  // and leaves the object closed. name shows in the broker's connection list.
  bool open(const AmqpUrl& url, const std::string& name, int heartbeat_s,
            std::chrono::milliseconds rpc_timeout, std::string& error);
  // Polite close (bounded by a short RPC timeout), then free everything.
  void close();
  // Free without the close handshake (the connection is already broken).
  void abandon();
  // From any thread: shut the socket down so a blocked call returns an error.
  void interrupt();

  bool is_open() const { return conn_ != nullptr; }
  amqp_connection_state_t get() const { return conn_; }
  int fd() const;
  // Frames or bytes already read into the library's buffers (poll() would not see them).
  bool has_buffered() const;

  // rabbitmq-c detects a silent broker only while it waits inside a call with
  // a timeout; our calls do not wait (we poll() ourselves), so the owner
  // notes every sign of life and asks whether the broker has been silent for
  // more than two heartbeat intervals.
  void note_rx() { last_rx_ = std::chrono::steady_clock::now(); }
  bool silent_too_long() const;

  // Readable reason of a failed RPC ("" when it succeeded).
  static std::string describe(const amqp_rpc_reply_t& r);
  // Readable reason of a failed status code.
  static std::string describe(int status);

 private:
  void destroy(bool polite);

  amqp_connection_state_t conn_ = nullptr;
  mutable std::mutex fd_mu_;  // guards interrupt() against the socket being freed
  int fd_ = -1;
  int heartbeat_s_ = 0;
  std::chrono::steady_clock::time_point last_rx_{};
};

}  // namespace chat::bus
