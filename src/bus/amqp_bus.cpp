// AmqpBus: the front over the publisher and consumer threads.
#include "bus/amqp_bus.hpp"

#include <spdlog/spdlog.h>

#include <chrono>
#include <utility>
#include <vector>

namespace chat::bus {

AmqpBus::AmqpBus(BusConfig config)
    : common_(std::move(config)), publisher_(common_), consumer_(common_, publisher_) {}

AmqpBus::~AmqpBus() {
  stop();
}

void AmqpBus::start(DeliveryHandler on_delivery, StateHandler on_state) {
  if (started_) return;
  started_ = true;
  on_delivery_ = on_delivery;
  common_.set_state_handler(std::move(on_state));
  publisher_.start();
  consumer_.start(std::move(on_delivery));
}

void AmqpBus::stop() {
  if (!started_ || common_.stopping()) return;
  common_.request_stop();
  publisher_.wake();
  consumer_.wake();
  // The publisher flushes the outbox for up to a second (so a last
  // "goodbye" gets out); a broker that hangs must not hold us longer.
  if (!common_.wait_threads(std::chrono::milliseconds(1500))) {
    spdlog::warn("bus: broker not answering, cutting the connections");
    publisher_.interrupt();
    consumer_.interrupt();
  }
  publisher_.join();
  consumer_.join();
  common_.report_state();
}

void AmqpBus::publish(EnvelopePtr envelope, ConfirmHandler confirm) {
  if (!envelope) return;
  // Local members get it now; the consumer drops our own copy from the broker.
  // With history, room envelopes come back from the stream like everyone
  // else's: one order, and a position, for all members. While the broker is
  // unreachable local members get them now (and the stream copy later only
  // fills the history).
  const bool from_stream = common_.config.history && !envelope->room.empty();
  const bool broker_up = common_.publisher_up() && common_.consumer_up();
  if (from_stream && !broker_up) common_.note_delivered_locally(envelope->id);
  if (on_delivery_ && (!from_stream || !broker_up))
    on_delivery_(std::vector<EnvelopePtr>{envelope});
  publisher_.publish(*envelope, std::move(confirm));
}

BusStatus AmqpBus::status() const {
  BusStatus s;
  s.kind = "amqp";
  s.publisher_up = common_.publisher_up();
  s.consumer_up = common_.consumer_up();
  s.ready = s.publisher_up && s.consumer_up && !common_.stopping();
  publisher_.fill(s);
  consumer_.fill(s);
  s.reconnects = common_.reconnects.load(std::memory_order_relaxed);
  s.exceptions = common_.last_resort.count();
  s.history = common_.config.history;
  s.partitions = common_.nparts;
  s.last_error = common_.last_error();
  return s;
}

}  // namespace chat::bus
