// Endpoints: everything plain HTTP the server answers besides Socket.IO.
// Public (main port): the page and client bundle, /healthz and a minimal
// /readyz (status only) for the balancer's and the container's health checks.
// Operations (admin listener, not public): /metrics, the detailed /readyz
// (broker, errors, counts) and /healthz.
#pragma once

#include "endpoints/static_files.hpp"
#include "transport/api.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace chat::endpoints {

struct Readiness {
  bool ready = false;
  nlohmann::json details;  // replica, bus status, draining ...
};

class Endpoints {
 public:
  Endpoints(StaticFiles files, std::function<Readiness()> readiness,
            std::function<std::string()> metrics);

  transport::HttpResponse handle(const transport::HttpRequest& req) const;
  transport::HttpResponse handle_admin(const transport::HttpRequest& req) const;

 private:
  StaticFiles files_;
  std::function<Readiness()> readiness_;
  std::function<std::string()> metrics_;
};

}  // namespace chat::endpoints
