// Prometheus text exposition of the server's counters (no client library is
// packaged for Debian, and the format is simple).
#pragma once

#include "admin/admin_ui.hpp"
#include "bus/bus.hpp"
#include "chat/chat_service.hpp"
#include "transport/api.hpp"

#include <string>

namespace chat::server {

std::string render_metrics(const std::string& replica, const transport::Stats& t,
                           const bus::BusStatus& b, const app::ChatStats* c);
// The Admin UI's figures (--admin-ui).
std::string render_admin_metrics(const std::string& replica, const admin::AdminUi::Stats& a);

}  // namespace chat::server
