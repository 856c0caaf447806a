// Bus factory: in-process bus without a broker URL, RabbitMQ bus with one.
#include "bus/factory.hpp"

#include "bus/amqp_bus.hpp"
#include "bus/inprocess_bus.hpp"

namespace chat::bus {

std::unique_ptr<Bus> make_bus(const BusConfig& config) {
  if (config.amqp_url.empty()) return std::make_unique<InProcessBus>();
  return std::make_unique<AmqpBus>(config);
}

}  // namespace chat::bus
