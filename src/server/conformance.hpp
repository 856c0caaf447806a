// The protocol test mode (--conformance): what the public Engine.IO v4 and
// Socket.IO v5 conformance suites expect of a server.
#pragma once

#include "transport/api.hpp"

namespace chat::server {

// Namespaces "/" and "/custom": on connect emit "auth" with the CONNECT
// payload; "message" -> "message-back" with the same arguments;
// "message-with-ack" -> ack with the same arguments.
void install_conformance(transport::Server& server);

}  // namespace chat::server
