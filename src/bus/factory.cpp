// Bus factory: in-process bus without a broker URL, RabbitMQ bus with one.
#include "bus/factory.hpp"

#include "bus/amqp_bus.hpp"
#include "bus/inprocess_bus.hpp"

#include <algorithm>

namespace chat::bus {

std::size_t republish_bound(const BusConfig& config) {
  return std::max<std::size_t>(1, config.max_inflight) + kControlInflight + 2 * kJoinMaxEnvelopes;
}

std::size_t dedupe_window_for(const BusConfig& config) {
  // Between an envelope's first copy and its re-publish a receiver sees, of
  // the same origin, only the other envelopes that were in flight with it:
  // re-publishes go out first, in order, before anything new.
  return std::max(config.dedupe_window, republish_bound(config));
}

std::unique_ptr<Bus> make_bus(const BusConfig& config) {
  if (config.amqp_url.empty()) return std::make_unique<InProcessBus>();
  return std::make_unique<AmqpBus>(config);
}

}  // namespace chat::bus
