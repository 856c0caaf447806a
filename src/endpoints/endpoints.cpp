// Endpoints; see endpoints.hpp.
#include "endpoints/endpoints.hpp"

namespace chat::endpoints {

namespace {
transport::HttpResponse text(unsigned status, std::string body,
                             std::string type = "text/plain; charset=utf-8") {
  transport::HttpResponse r;
  r.status = status;
  r.content_type = std::move(type);
  r.body = std::make_shared<const std::string>(std::move(body));
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}
}  // namespace

Endpoints::Endpoints(StaticFiles files, std::function<Readiness()> readiness,
                     std::function<std::string()> metrics)
    : files_(std::move(files)), readiness_(std::move(readiness)), metrics_(std::move(metrics)) {}

transport::HttpResponse Endpoints::handle(const transport::HttpRequest& req) const {
  if (req.method != "GET" && req.method != "HEAD") {
    auto r = text(405, "method not allowed\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (req.path == "/healthz") return text(200, R"({"status":"ok"})", "application/json");
  if (req.path == "/readyz") {
    const bool ready = readiness_().ready;
    return text(ready ? 200 : 503, ready ? R"({"ready":true})" : R"({"ready":false})",
                "application/json");
  }
  if (const auto* f = files_.find(req.path)) {
    transport::HttpResponse r;
    r.status = 200;
    r.content_type = f->content_type;
    r.body = f->body;
    // The page changes with deployments; the bundle is versioned by npm.
    r.headers.emplace_back("Cache-Control", "no-cache");
    r.headers.emplace_back("X-Content-Type-Options", "nosniff");
    return r;
  }
  // A folder named without its slash (/admin): its page's relative links
  // need the slash.
  if (files_.find(req.path + "/")) {
    auto r = text(301, "moved\n");
    r.headers.emplace_back("Location", req.path + "/");
    return r;
  }
  return text(404, "not found\n");
}

transport::HttpResponse Endpoints::handle_admin(const transport::HttpRequest& req) const {
  if (req.method != "GET" && req.method != "HEAD") {
    auto r = text(405, "method not allowed\n");
    r.headers.emplace_back("Allow", "GET, HEAD");
    return r;
  }
  if (req.path == "/healthz") return text(200, R"({"status":"ok"})", "application/json");
  if (req.path == "/readyz") {
    auto state = readiness_();
    state.details["ready"] = state.ready;
    return text(state.ready ? 200 : 503, state.details.dump(), "application/json");
  }
  if (req.path == "/metrics")
    return text(200, metrics_(), "text/plain; version=0.0.4; charset=utf-8");
  return text(404, "not found\n");
}

}  // namespace chat::endpoints
