// InProcessBus: the bus of a single replica, without a broker.
//
// publish hands the envelope straight back to the delivery handler (a batch
// of one) and confirms true: there is nobody else to relay to. Room binding is
// a no-op because the application filters deliveries by membership. Room
// envelopes get positions from a counter (kept in memory only: a single
// replica's history does not outlive the process).
#pragma once

#include "bus/bus.hpp"

#include <atomic>
#include <mutex>

namespace chat::bus {

class InProcessBus final : public Bus {
 public:
  InProcessBus() = default;

  void start(DeliveryHandler on_delivery, StateHandler on_state) override;
  void stop() override;
  void publish(EnvelopePtr envelope, ConfirmHandler confirm) override;
  void bind_room(const std::string& room) override;
  void unbind_room(const std::string& room) override;
  BusStatus status() const override;

 private:
  // Set once in start() before any publish; read on any thread afterwards.
  DeliveryHandler on_delivery_;
  std::atomic<bool> running_{false};
  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::int64_t> bound_{0};
  std::atomic<std::int64_t> next_position_{0};  // positions of room envelopes, in publish order
};

}  // namespace chat::bus
