// Plan: who connects where, which room each client is in and who sends.
//
// Client i goes to server URL i % U (so every room spans the replicas) from
// source address 127.0.0.(1 + (i / U) % K), and is run by thread i % T.
#pragma once

#include "options.hpp"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace loadgen {

struct ClientSpec {
  unsigned url = 0;
  std::string source;  // local address to bind
  std::string room;    // room of the load (text carries it too)
  bool login = false;  // send "add user" and wait for "login"
  bool join = false;   // send "join room" and wait for its ack
  bool sender = false;
  std::uint64_t id = 0;  // sender id, unique across processes (tag << 32 | index)
  unsigned sender_ordinal = 0;
};

struct ServerAddress {
  std::string host;
  std::uint16_t port = 0;
};

class Plan {
 public:
  // Throws std::invalid_argument on a bad option (start-up only).
  explicit Plan(const Options& o);

  const std::vector<ClientSpec>& clients() const { return clients_; }
  const std::vector<ServerAddress>& servers() const { return servers_; }
  unsigned sender_count() const { return sender_count_; }
  // Indices of the clients of this process that send into room.
  const std::vector<std::size_t>& senders_in(const std::string& room) const;

 private:
  std::vector<ClientSpec> clients_;
  std::vector<ServerAddress> servers_;
  std::unordered_map<std::string, std::vector<std::size_t>> senders_by_room_;
  unsigned sender_count_ = 0;
};

}  // namespace loadgen
