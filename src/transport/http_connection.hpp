// HttpConnection: one accepted TCP connection speaking HTTP/1.1. It routes
// Engine.IO polling requests to their session (on the session's worker),
// hands WebSocket upgrades to a WsConnection on the session's worker, and
// everything else to the application's HttpHandler.
#pragma once

#include "transport/api.hpp"
#include "transport/tls.hpp"
#include "transport/tls_stream.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>

namespace chat::transport {

class ServerImpl;

class HttpConnection : public std::enable_shared_from_this<HttpConnection> {
 public:
  using Request = boost::beast::http::request<boost::beast::http::string_body>;
  using Response = boost::beast::http::response<boost::beast::http::string_body>;

  // slot: the per-IP connection count this connection holds ("" for none),
  // released with the connection. admin: the operations listener.
  HttpConnection(ServerImpl& server, unsigned worker, boost::asio::ip::tcp::socket socket,
                 std::string slot = {}, bool admin = false);
  ~HttpConnection();
  HttpConnection(const HttpConnection&) = delete;
  HttpConnection& operator=(const HttpConnection&) = delete;
  void run();

 private:
  void read_request();
  void on_read(boost::beast::error_code ec);
  void handle(Request req);
  void handle_engine(Request& req, const std::map<std::string, std::string>& query, bool raw_echo);
  void handle_websocket(Request req, const std::map<std::string, std::string>& query,
                        bool raw_echo);
  void handle_app(Request& req, const std::string& path);
  static Response response_of(const HttpResponse& out, unsigned version, bool keep_alive,
                              bool head);
  void send(Response res);
  void send_engine_error(const Request& req, unsigned status, int code, const char* message);
  void add_cors(const Request& req, Response& res) const;
  // No Origin (not a browser), or one the policy allows (docs/transport.md).
  bool origin_ok(const Request& req) const;
  // Answer a refused request: status with {"code":4,"message":...}.
  void send_refusal(const Request& req, unsigned status, const char* message);
  void on_written(bool close, boost::beast::error_code ec);
  Handshake make_handshake(const Request& req, const char* transport) const;
  // Run f with the stream requests are read from and answers written to:
  // the TCP stream, or TLS over it.
  template <class F>
  void with_stream(F&& f) {
    if (tls_stream_)
      f(*tls_stream_);
    else
      f(stream_);
  }

  ServerImpl& server_;
  unsigned worker_;
  boost::beast::tcp_stream stream_;
  std::unique_ptr<TlsChannel> tls_;  // the main listener's with --tls-cert; moves to a WebSocket
  std::unique_ptr<TlsStream> tls_stream_;  // made only with TLS: plain connections stay small
  bool secure_ = false;                    // TLS: the browser's origin is https://
  std::string slot_;
  bool admin_;
  boost::asio::ip::address peer_;
  bool peer_trusted_ = false;  // a configured proxy: its X-Forwarded-* headers are believed
  boost::beast::flat_buffer buffer_;
  std::optional<boost::beast::http::request_parser<boost::beast::http::string_body>> parser_;
  bool reading_ = false;
  bool writing_ = false;
  bool parked_ = false;  // a polling GET waits for its session
  std::string parked_sid_;
  std::optional<Request> next_;  // a request read while a response was pending
  bool closed_ = false;
  bool served_ =
      false;  // at least one request read (idle timeout instead of the first-request one)
};

}  // namespace chat::transport
