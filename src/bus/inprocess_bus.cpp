// InProcessBus: deliver every publish locally, confirm at once.
#include "bus/inprocess_bus.hpp"

namespace chat::bus {

void InProcessBus::start(DeliveryHandler on_delivery, StateHandler on_state) {
  on_delivery_ = std::move(on_delivery);
  running_ = true;
  if (on_state) on_state(true);
}

void InProcessBus::stop() {
  running_ = false;
}

void InProcessBus::publish(EnvelopePtr envelope, ConfirmHandler confirm) {
  if (!envelope) return;
  if (!running_ || !on_delivery_) {
    if (confirm) confirm(PublishStatus::unavailable);
    return;
  }
  published_.fetch_add(1, std::memory_order_relaxed);
  if (!envelope->room.empty() && envelope->position < 0) {
    // The publisher does not read it back; receivers see it set.
    const_cast<Envelope&>(*envelope).position =
        next_position_.fetch_add(1, std::memory_order_relaxed) * kPositionScale;
  }
  on_delivery_(std::vector<EnvelopePtr>{std::move(envelope)});
  if (confirm) confirm(PublishStatus::ok);
}

void InProcessBus::bind_room(const std::string&) {
  bound_.fetch_add(1, std::memory_order_relaxed);
}

void InProcessBus::unbind_room(const std::string&) {
  bound_.fetch_sub(1, std::memory_order_relaxed);
}

BusStatus InProcessBus::status() const {
  BusStatus s;
  s.kind = "inprocess";
  s.ready = running_.load();
  s.publisher_up = s.ready;
  s.consumer_up = s.ready;
  const auto n = published_.load(std::memory_order_relaxed);
  s.published = n;
  s.confirmed = n;
  s.consumed = n;
  const auto b = bound_.load(std::memory_order_relaxed);
  s.bound_rooms = b > 0 ? static_cast<std::uint64_t>(b) : 0;
  s.history = true;
  s.stream_offset = next_position_.load(std::memory_order_relaxed) - 1;
  return s;
}

}  // namespace chat::bus
