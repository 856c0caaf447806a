// HttpConnection; see http_connection.hpp.
#include "transport/http_connection.hpp"

#include "transport/deflate_cache.hpp"
#include "transport/engine_session.hpp"
#include "transport/net_policy.hpp"
#include "transport/server_impl.hpp"
#include "transport/worker_stats.hpp"
#include "transport/ws_connection.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>

namespace chat::transport {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {
constexpr auto kIdleTimeout = std::chrono::seconds(60);
// A new connection must deliver its first request quickly: a client that
// connects and dribbles header bytes should not hold a descriptor for long.
constexpr auto kFirstRequestTimeout = std::chrono::seconds(10);
// While a polling GET is parked the connection still reads, to notice a
// client that goes away. What it may read meanwhile is small (clients do not
// pipeline behind a GET), and the read has a deadline: the heartbeat answers
// a parked GET within the ping interval, so a GET parked much longer has a
// peer that vanished without a FIN.
constexpr std::size_t kParkedBodyLimit = 16 * 1024;
constexpr auto kParkedSlack = std::chrono::seconds(5);

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else if (s[i] == '+') {
      out += ' ';
    } else {
      out += s[i];
    }
  }
  return out;
}

std::map<std::string, std::string> parse_query(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    const auto amp = q.find('&');
    auto part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    if (part.empty()) continue;
    const auto eq = part.find('=');
    auto key = url_decode(part.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::string{} : url_decode(part.substr(eq + 1));
    out.emplace(std::move(key), std::move(value));
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Whether an Accept-Encoding value takes gzip ("gzip", "*", not with q=0).
bool accepts_gzip(std::string_view value) {
  const auto v = lower(value);
  std::string_view rest = v;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const auto semi = item.find(';');
    std::string_view name = item.substr(0, semi);
    while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
    while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
    if (name != "gzip" && name != "*") continue;
    if (semi == std::string_view::npos) return true;
    std::string params(item.substr(semi + 1));
    std::erase(params, ' ');
    // q=0, q=0.0, q=0.00, q=0.000: not acceptable.
    if (params.starts_with("q=0") && params.find_first_not_of("0.", 2) == std::string::npos)
      continue;
    return true;
  }
  return false;
}
}  // namespace

HttpConnection::HttpConnection(ServerImpl& server, unsigned worker, tcp::socket socket,
                               std::string slot, bool admin)
    : server_(server),
      worker_(worker),
      stream_(std::move(socket)),
      slot_(std::move(slot)),
      admin_(admin) {
  if (!admin_ && server_.options().tls) {
    tls_ = std::make_unique<TlsChannel>(*server_.options().tls);
    tls_stream_ = std::make_unique<TlsStream>(stream_, *tls_);
    secure_ = true;
  }
  beast::error_code ec;
  const auto ep = stream_.socket().remote_endpoint(ec);
  if (!ec) {
    peer_ = unmap(ep.address());
    peer_trusted_ = server_.trusted_proxies().contains(peer_);
  }
}

HttpConnection::~HttpConnection() {
  if (!slot_.empty()) server_.release_http_slot(slot_);
}

void HttpConnection::run() {
  read_request();
}

void HttpConnection::read_request() {
  if (reading_ || closed_) return;
  reading_ = true;
  parser_.emplace();
  const auto& o = server_.options();
  parser_->body_limit(parked_ ? kParkedBodyLimit : o.max_payload);
  parser_->header_limit(16 * 1024);
  if (parked_)
    stream_.expires_after(o.ping_interval + o.ping_timeout + kParkedSlack);
  else
    stream_.expires_after(served_ ? kIdleTimeout : kFirstRequestTimeout);
  with_stream([&](auto& stream) {
    http::async_read(
        stream, buffer_, *parser_,
        [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_read(ec); });
  });
}

void HttpConnection::on_read(beast::error_code ec) {
  reading_ = false;
  if (closed_) return;
  if (ec == http::error::body_limit && !parked_ && !writing_) {
    WorkerStats::add(server_.worker_stats(worker_).payload_too_large_total, 1);
    Response res{http::status::payload_too_large, 11};
    res.set(http::field::content_type, "text/plain; charset=UTF-8");
    res.body() = "payload too large";
    res.keep_alive(false);
    return send(std::move(res));
  }
  if (ec) {
    if (ec == http::error::body_limit)
      WorkerStats::add(server_.worker_stats(worker_).payload_too_large_total, 1);
    if (parked_ && !parked_sid_.empty()) {
      // The client gave up on its parked GET: that ends the session.
      if (auto s = server_.find_session(parked_sid_))
        asio::post(server_.workers().at(s->worker()),
                   [s, owner = static_cast<const void*>(this)] { s->poll_aborted(owner); });
    }
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    return;
  }
  auto req = parser_->release();
  if (parked_ || writing_) {
    next_ = std::move(req);  // pipelined: handled after the pending response
    return;
  }
  handle(std::move(req));
}

void HttpConnection::handle(Request req) {
  served_ = true;
  WorkerStats::add(server_.worker_stats(worker_).http_requests_total, 1);
  const std::string_view target = req.target();
  const auto qpos = target.find('?');
  const std::string path(target.substr(0, qpos));
  const auto query =
      parse_query(qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1));
  const auto& o = server_.options();
  if (admin_) return handle_app(req, path);
  const bool raw = !o.raw_echo_path.empty() && path == o.raw_echo_path;
  if (path == o.path || raw) {
    if (!origin_ok(req)) {
      WorkerStats::add(server_.worker_stats(worker_).origin_refused_total, 1);
      return send_refusal(req, 403, "Origin not allowed");
    }
    if (beast::websocket::is_upgrade(req)) return handle_websocket(std::move(req), query, raw);
    return handle_engine(req, query, raw);
  }
  handle_app(req, path);
}

bool HttpConnection::origin_ok(const Request& req) const {
  const auto origin = req[http::field::origin];
  if (origin.empty() || server_.options().cors_any) return true;
  // The server's own origin: the scheme and host the browser sent the request
  // to. Behind a trusted proxy that terminates TLS or renames the host, its
  // X-Forwarded-Proto / X-Forwarded-Host say what the browser saw.
  std::string_view scheme = secure_ ? "https" : "http";
  std::string_view host = req[http::field::host];
  if (peer_trusted_) {
    const auto first = [](std::string_view v) {
      v = v.substr(0, v.find(','));
      while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
      while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
      return v;
    };
    if (auto p = first(req["X-Forwarded-Proto"]); !p.empty()) scheme = p;
    if (auto h = first(req["X-Forwarded-Host"]); !h.empty()) host = h;
  }
  return origin_allowed(origin, scheme, host, server_.options().cors_origins);
}

void HttpConnection::send_refusal(const Request& req, unsigned status, const char* message) {
  Response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  if (status == 503) res.set(http::field::retry_after, "5");
  res.body() = nlohmann::json{{"code", 4}, {"message", message}}.dump();
  res.keep_alive(req.keep_alive());
  add_cors(req, res);
  send(std::move(res));
}

void HttpConnection::add_cors(const Request& req, Response& res) const {
  const auto origin = req[http::field::origin];
  if (origin.empty() || !origin_ok(req)) return;
  res.set(http::field::access_control_allow_origin, origin);
  res.set(http::field::access_control_allow_credentials, "true");
  res.set(http::field::vary, "Origin");
}

void HttpConnection::send_engine_error(const Request& req, unsigned status, int code,
                                       const char* message) {
  WorkerStats::add(server_.worker_stats(worker_).bad_requests_total, 1);
  Response res{static_cast<http::status>(status), req.version()};
  res.set(http::field::content_type, "application/json");
  res.body() = nlohmann::json{{"code", code}, {"message", message}}.dump();
  res.keep_alive(req.keep_alive());
  add_cors(req, res);
  send(std::move(res));
}

Handshake HttpConnection::make_handshake(const Request& req, const char* transport) const {
  Handshake h;
  std::string forwarded;  // every X-Forwarded-For header, in order
  if (peer_trusted_) {
    for (const auto& f : req) {
      if (!beast::iequals(f.name_string(), "x-forwarded-for")) continue;
      if (!forwarded.empty()) forwarded += ',';
      forwarded += f.value();
    }
  }
  h.remote_address =
      (peer_trusted_ ? resolve_client(peer_, forwarded, server_.trusted_proxies()) : peer_)
          .to_string();
  h.transport = transport;
  h.issued_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  return h;
}

void HttpConnection::handle_engine(Request& req, const std::map<std::string, std::string>& query,
                                   bool raw_echo) {
  const auto& o = server_.options();
  if (req.method() == http::verb::options) {
    Response res{http::status::no_content, req.version()};
    add_cors(req, res);
    res.set(http::field::access_control_allow_methods, "GET, POST, OPTIONS");
    if (auto h = req[http::field::access_control_request_headers]; !h.empty())
      res.set(http::field::access_control_allow_headers, h);
    res.keep_alive(req.keep_alive());
    return send(std::move(res));
  }
  const auto t = query.find("transport");
  if (t == query.end() || (t->second != "polling" && t->second != "websocket") ||
      (t->second == "polling" && !o.allow_polling) ||
      (t->second == "websocket" && !o.allow_websocket))
    return send_engine_error(req, 400, 0, "Transport unknown");
  const auto eio = query.find("EIO");
  if (eio == query.end() || !protocol::eio::supported_version(eio->second))
    return send_engine_error(req, 400, 5, "Unsupported protocol version");
  if (t->second == "websocket") return send_engine_error(req, 400, 3, "Bad request");

  const auto sid_it = query.find("sid");
  if (sid_it == query.end()) {
    if (req.method() != http::verb::get)
      return send_engine_error(req, 400, 2, "Bad handshake method");
    if (server_.shutting_down()) return send_engine_error(req, 503, 4, "Server shutting down");
    auto handshake = make_handshake(req, "polling");
    if (const auto a = server_.admit_session(handshake.remote_address);
        a != ServerImpl::Admission::ok) {
      server_.count_refusal(worker_, a);
      return send_refusal(req, 503, ServerImpl::refusal_message(a));
    }
    auto s = server_.create_session(worker_, false, raw_echo, std::move(handshake));
    Response res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=UTF-8");
    res.set(http::field::cache_control, "no-store");
    res.body() = s->open();
    res.keep_alive(req.keep_alive());
    add_cors(req, res);
    return send(std::move(res));
  }

  auto session = server_.find_session(sid_it->second);
  if (!session) return send_engine_error(req, 400, 1, "Session ID unknown");
  if (session->kind() != EngineSession::Kind::polling)
    return send_engine_error(req, 400, 3, "Bad request");

  const bool is_get = req.method() == http::verb::get;
  if (!is_get && req.method() != http::verb::post)
    return send_engine_error(req, 400, 2, "Bad handshake method");
  if (!is_get && req[http::field::content_type] == "application/octet-stream") {
    // Engine.IO v4 sends binary as "b<base64>" text; raw bytes are a v3 client.
    asio::post(server_.workers().at(session->worker()),
               [session] { session->protocol_error("binary polling body"); });
    return send_engine_error(req, 400, 3, "Bad request");
  }

  // The session lives on its own worker: ask there, answer here.
  parked_ = true;
  parked_sid_ = is_get ? sid_it->second : std::string{};
  auto self = shared_from_this();
  auto req_ptr = std::make_shared<Request>(std::move(req));
  auto& here = server_.workers().at(worker_);
  auto finish = [self, req_ptr, &here](bool ok, std::string body, bool post) {
    self->server_.io_begin();  // the answer is on its way: shutdown waits for it
    asio::post(here, [self, req_ptr, ok, body = std::move(body), post]() mutable {
      struct IoEnd {
        ServerImpl& s;
        ~IoEnd() { s.io_end(); }
      } io_end{self->server_};
      self->parked_ = false;
      self->parked_sid_.clear();
      if (self->closed_) return;
      if (!ok) return self->send_engine_error(*req_ptr, 400, 3, "Bad request");
      Response res{http::status::ok, req_ptr->version()};
      res.set(http::field::content_type, post ? "text/html" : "text/plain; charset=UTF-8");
      res.set(http::field::cache_control, "no-store");
      const auto& opts = self->server_.options();
      if (opts.http_compression && body.size() >= opts.compress_threshold) {
        res.set(http::field::vary, "Accept-Encoding");
        if (accepts_gzip((*req_ptr)[http::field::accept_encoding])) {
          body = DeflateCache::here().gzip(body);
          res.set(http::field::content_encoding, "gzip");
          WorkerStats::add(self->server_.worker_stats(self->worker_).compressed_responses_total, 1);
        }
      }
      res.body() = std::move(body);
      res.keep_alive(req_ptr->keep_alive());
      self->add_cors(*req_ptr, res);
      self->send(std::move(res));
    });
  };
  asio::post(server_.workers().at(session->worker()),
             [session, req_ptr, is_get, finish, owner = static_cast<const void*>(this)]() {
               if (is_get) {
                 auto r = session->poll(
                     [finish](std::string body) { finish(true, std::move(body), false); }, owner);
                 if (r == EngineSession::PollResult::bad_request) finish(false, {}, false);
               } else {
                 auto r = session->post(req_ptr->body());
                 finish(r == EngineSession::PollResult::ok, "ok", true);
               }
             });
  if (is_get) read_request();  // notice when the client closes the parked request
}

void HttpConnection::handle_websocket(Request req, const std::map<std::string, std::string>& query,
                                      bool raw_echo) {
  const auto& o = server_.options();
  const auto t = query.find("transport");
  if (!o.allow_websocket || t == query.end() || t->second != "websocket")
    return send_engine_error(req, 400, 0, "Transport unknown");
  const auto eio = query.find("EIO");
  if (eio == query.end() || !protocol::eio::supported_version(eio->second))
    return send_engine_error(req, 400, 5, "Unsupported protocol version");

  std::shared_ptr<EngineSession> session;
  unsigned target = worker_;
  if (auto sid = query.find("sid"); sid != query.end()) {
    session = server_.find_session(sid->second);
    if (!session) return send_engine_error(req, 400, 1, "Session ID unknown");
    target = session->worker();
  } else if (server_.shutting_down()) {
    return send_engine_error(req, 503, 4, "Server shutting down");
  }
  auto handshake = make_handshake(req, "websocket");
  if (!session) {
    // A new session: refuse the upgrade (no 101) over a bound.
    if (const auto a = server_.admit_session(handshake.remote_address);
        a != ServerImpl::Admission::ok) {
      server_.count_refusal(worker_, a);
      return send_refusal(req, 503, ServerImpl::refusal_message(a));
    }
  }
  closed_ = true;  // the socket (and its TLS session) now belong to the WebSocket
  stream_.expires_never();
  tls_stream_.reset();
  if (target == worker_) {
    std::make_shared<WsConnection>(server_, target, std::move(stream_.socket()), std::move(session),
                                   raw_echo, std::move(tls_))
        ->run(req, std::move(handshake));
    return;
  }
  // The WebSocket must live on the session's worker: move the descriptor there.
  beast::error_code ec;
  const auto protocol = stream_.socket().local_endpoint(ec).protocol();
  const auto fd = stream_.socket().release(ec);
  if (ec) return;
  auto& server = server_;
  asio::post(server_.workers().at(target),
             [&server, target, fd, protocol, req = std::move(req), session = std::move(session),
              raw_echo, handshake = std::move(handshake), tls = std::move(tls_)]() mutable {
               tcp::socket sock(server.workers().at(target));
               beast::error_code e;
               sock.assign(protocol, fd, e);
               if (e) return;
               std::make_shared<WsConnection>(server, target, std::move(sock), std::move(session),
                                              raw_echo, std::move(tls))
                   ->run(req, std::move(handshake));
             });
}

void HttpConnection::handle_app(Request& req, const std::string& path) {
  const auto* async = admin_ ? nullptr : server_.async_handler(path);
  const auto& handler = admin_ ? server_.admin_handler() : server_.http_handler();
  if (!handler && !async) {
    Response res{http::status::not_found, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "not found\n";
    res.keep_alive(req.keep_alive());
    return send(std::move(res));
  }
  HttpRequest hr;
  hr.method = std::string(req.method_string());
  hr.target = std::string(req.target());
  hr.path = path;
  for (const auto& f : req) hr.headers[lower(f.name_string())] = std::string(f.value());
  hr.body = std::move(req.body());
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  const bool head = req.method() == http::verb::head;
  if (async) {
    // Nothing is read until the answer went out (writing_ holds pipelined
    // requests back); the answer comes back to this connection's thread.
    writing_ = true;
    auto once = std::make_shared<std::atomic<bool>>(false);
    (*async)(std::move(hr),
             [self = shared_from_this(), once, version, keep_alive, head](HttpResponse out) {
               if (once->exchange(true)) return;
               auto& here = self->server_.workers().at(self->worker_);
               asio::post(here, [self, out = std::move(out), version, keep_alive, head]() mutable {
                 if (self->closed_) return;
                 self->send(self->response_of(out, version, keep_alive, head));
               });
             });
    return;
  }
  send(response_of(handler(hr), version, keep_alive, head));
}

HttpConnection::Response HttpConnection::response_of(const HttpResponse& out, unsigned version,
                                                     bool keep_alive, bool head) {
  Response res{static_cast<http::status>(out.status), version};
  res.set(http::field::content_type, out.content_type);
  for (const auto& [k, v] : out.headers) res.set(k, v);
  if (out.body && !head) res.body() = *out.body;
  res.keep_alive(keep_alive);
  res.prepare_payload();
  if (head && out.body) res.content_length(out.body->size());
  return res;
}

void HttpConnection::send(Response res) {
  if (res.find(http::field::content_length) == res.end()) res.prepare_payload();
  writing_ = true;
  const bool close = res.need_eof();
  auto sp = std::make_shared<Response>(std::move(res));
  stream_.expires_after(server_.options().write_timeout);
  server_.io_begin();
  with_stream([&](auto& stream) {
    http::async_write(stream, *sp,
                      [self = shared_from_this(), sp, close](beast::error_code ec, std::size_t) {
                        self->on_written(close, ec);
                      });
  });
}

void HttpConnection::on_written(bool close, beast::error_code ec) {
  server_.io_end();
  writing_ = false;
  if (ec || close) {
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    return;
  }
  if (next_) {
    auto r = std::move(*next_);
    next_.reset();
    return handle(std::move(r));
  }
  if (reading_) {
    // The read that is already waiting (started while a GET was parked):
    // the next request may carry a full body, and gets the idle deadline.
    if (parser_) parser_->body_limit(server_.options().max_payload);
    stream_.expires_after(kIdleTimeout);
  } else {
    read_request();
  }
}

}  // namespace chat::transport
