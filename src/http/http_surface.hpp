// HttpSurface: everything plain HTTP the server answers besides Socket.IO:
// the page and client bundle, /healthz, /readyz and /metrics.
#pragma once

#include "http/static_files.hpp"
#include "transport/api.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>

namespace chat::http {

struct Readiness {
  bool ready = false;
  nlohmann::json details;  // replica, bus status, draining ...
};

class HttpSurface {
 public:
  HttpSurface(StaticFiles files, std::function<Readiness()> readiness,
              std::function<std::string()> metrics);

  transport::HttpResponse handle(const transport::HttpRequest& req) const;

 private:
  StaticFiles files_;
  std::function<Readiness()> readiness_;
  std::function<std::string()> metrics_;
};

}  // namespace chat::http
