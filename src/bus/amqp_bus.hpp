// AmqpBus: the cluster bus over RabbitMQ (rabbitmq-c 0.11), a thin front
// over its two sides (docs/cluster.md).
//
// Topology: one durable topic exchange; per process one server-named,
// exclusive, auto-delete queue bound to "cluster" (control) and, without
// history, to "room.<encoded room>" for every room with a local member;
// with history, room traffic lives in durable streams (one, or one per
// partition and one for the reserved rooms) that every replica reads.
//
// Threads: rabbitmq-c connections are blocking and not thread-safe, so
// there are two connections, each owned by one thread: AmqpPublisher
// (outbox, confirms, the read-back check) and AmqpConsumer (own queue,
// streams, partitions, deliveries). Both reconnect on their own with
// exponential backoff and jitter and rebuild their part of the topology;
// what they share is in AmqpCommon. This front routes the Bus calls to them
// and delivers own room envelopes at publish while the broker is away.
//
// Guarantees (see docs/cluster.md): a publish is confirmed true only after the
// broker's basic.ack; what was unconfirmed when a connection died is published
// again after the reconnect (at-least-once), and receivers drop the second
// copy with a per-origin id window, so nothing is delivered twice.
#pragma once

#include "bus/amqp_common.hpp"
#include "bus/amqp_consumer.hpp"
#include "bus/amqp_publisher.hpp"
#include "bus/bus.hpp"
#include "bus/factory.hpp"

#include <cstdint>
#include <string>

namespace chat::bus {

class AmqpBus final : public Bus {
 public:
  // Throws std::invalid_argument for a malformed URL (start-up only).
  explicit AmqpBus(BusConfig config);
  ~AmqpBus() override;
  AmqpBus(const AmqpBus&) = delete;
  AmqpBus& operator=(const AmqpBus&) = delete;

  void start(DeliveryHandler on_delivery, StateHandler on_state) override;
  void stop() override;
  void publish(EnvelopePtr envelope, ConfirmHandler confirm) override;
  void bind_room(const std::string& room) override { consumer_.bind_room(room); }
  void unbind_room(const std::string& room) override { consumer_.unbind_room(room); }
  std::uint32_t partitions() const override { return common_.nparts; }
  void attach(std::uint32_t partition) override { consumer_.attach(partition); }
  BusStatus status() const override;

 private:
  AmqpCommon common_;
  AmqpPublisher publisher_;
  AmqpConsumer consumer_;
  DeliveryHandler on_delivery_;
  bool started_ = false;
};

}  // namespace chat::bus
