// AmqpConnection: connect/login/channel for rabbitmq-c 0.11.
#include "bus/amqp_connection.hpp"

#include "runtime/redact.hpp"

#include <amqp_tcp_socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <fmt/format.h>

#include <stdexcept>
#include <vector>

namespace chat::bus {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

std::string bytes_to_string(const amqp_bytes_t& b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

}  // namespace

AmqpUrl parse_amqp_url(const std::string& url) {
  std::vector<char> buf(url.begin(), url.end());
  buf.push_back('\0');
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(buf.data(), &info) != AMQP_STATUS_OK)
    throw std::invalid_argument("invalid AMQP URL: " + runtime::redact_url(url));
  if (info.ssl)
    throw std::invalid_argument("amqps:// is not supported: " + runtime::redact_url(url));
  AmqpUrl u;
  u.host = info.host;
  u.port = info.port;
  u.user = info.user;
  u.password = info.password;
  u.vhost = info.vhost;
  return u;
}

std::vector<AmqpUrl> parse_amqp_urls(const std::string& list) {
  std::vector<AmqpUrl> out;
  std::size_t from = 0;
  while (from <= list.size()) {
    auto to = list.find(',', from);
    if (to == std::string::npos) to = list.size();
    auto one = list.substr(from, to - from);
    one.erase(0, one.find_first_not_of(" \t"));
    one.erase(one.find_last_not_of(" \t") + 1);
    if (!one.empty()) out.push_back(parse_amqp_url(one));
    from = to + 1;
  }
  if (out.empty()) throw std::invalid_argument("no AMQP URL given");
  return out;
}

AmqpConnection::~AmqpConnection() {
  abandon();
}

bool AmqpConnection::open(const AmqpUrl& url, const std::string& name, int heartbeat_s,
                          std::chrono::milliseconds rpc_timeout, std::string& error) {
  abandon();
  conn_ = amqp_new_connection();
  if (!conn_) {
    error = "out of memory";
    return false;
  }
  amqp_socket_t* socket = amqp_tcp_socket_new(conn_);
  if (!socket) {
    error = "cannot create socket";
    abandon();
    return false;
  }
  auto tv = to_timeval(rpc_timeout);
  // Without these two the library waits forever on a broker that accepted
  // the TCP connection but does not answer (e.g. a stopped process).
  amqp_set_handshake_timeout(conn_, &tv);
  amqp_set_rpc_timeout(conn_, &tv);
  const int st = amqp_socket_open_noblock(socket, url.host.c_str(), url.port, &tv);
  if (st != AMQP_STATUS_OK) {
    error = fmt::format("connect {}:{}: {}", url.host, url.port, describe(st));
    abandon();
    return false;
  }
  {
    std::lock_guard lock(fd_mu_);
    fd_ = amqp_get_sockfd(conn_);
  }
  // Unacknowledged outgoing data for longer than this kills the connection
  // in the kernel, so a send to a vanished broker fails instead of hanging.
  const unsigned user_timeout_ms =
      static_cast<unsigned>(heartbeat_s > 0 ? (heartbeat_s * 2 + 1) * 1000 : 30000);
  ::setsockopt(fd_, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  // connection_name lets an operator (and the tests) tell the connections apart.
  amqp_table_entry_t prop;
  prop.key = amqp_cstring_bytes("connection_name");
  prop.value.kind = AMQP_FIELD_KIND_UTF8;
  prop.value.value.bytes = amqp_cstring_bytes(name.c_str());
  amqp_table_t props{1, &prop};
  const auto login =
      amqp_login_with_properties(conn_, url.vhost.c_str(), 0, 131072, heartbeat_s, &props,
                                 AMQP_SASL_METHOD_PLAIN, url.user.c_str(), url.password.c_str());
  if (login.reply_type != AMQP_RESPONSE_NORMAL) {
    error = fmt::format("login {}:{}: {}", url.host, url.port, describe(login));
    abandon();
    return false;
  }
  amqp_channel_open(conn_, 1);
  const auto ch = amqp_get_rpc_reply(conn_);
  if (ch.reply_type != AMQP_RESPONSE_NORMAL) {
    error = "channel.open: " + describe(ch);
    abandon();
    return false;
  }
  heartbeat_s_ = amqp_get_heartbeat(conn_);
  note_rx();
  return true;
}

bool AmqpConnection::silent_too_long() const {
  if (heartbeat_s_ <= 0) return false;
  return std::chrono::steady_clock::now() - last_rx_ > std::chrono::seconds(2 * heartbeat_s_ + 1);
}

void AmqpConnection::close() {
  destroy(true);
}
void AmqpConnection::abandon() {
  destroy(false);
}

void AmqpConnection::destroy(bool polite) {
  if (!conn_) return;
  if (polite) {
    // A frozen broker must not hold up shutdown: wait at most briefly.
    auto tv = to_timeval(std::chrono::milliseconds(300));
    amqp_set_rpc_timeout(conn_, &tv);
    amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  }
  {
    std::lock_guard lock(fd_mu_);
    fd_ = -1;
  }
  amqp_destroy_connection(conn_);
  conn_ = nullptr;
}

void AmqpConnection::interrupt() {
  std::lock_guard lock(fd_mu_);
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
}

int AmqpConnection::fd() const {
  std::lock_guard lock(fd_mu_);
  return fd_;
}

bool AmqpConnection::has_buffered() const {
  return conn_ && (amqp_frames_enqueued(conn_) || amqp_data_in_buffer(conn_));
}

std::string AmqpConnection::describe(int status) {
  return amqp_error_string2(status);
}

std::string AmqpConnection::describe(const amqp_rpc_reply_t& r) {
  switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return "";
    case AMQP_RESPONSE_NONE:
      return "missing RPC reply";
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return describe(r.library_error);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_connection_close_t*>(r.reply.decoded);
        return fmt::format("connection closed by broker: {} {}", m->reply_code,
                           bytes_to_string(m->reply_text));
      }
      if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        const auto* m = static_cast<const amqp_channel_close_t*>(r.reply.decoded);
        return fmt::format("channel closed by broker: {} {}", m->reply_code,
                           bytes_to_string(m->reply_text));
      }
      return fmt::format("broker error, method {:#x}", r.reply.id);
  }
  return "unknown RPC reply";
}

}  // namespace chat::bus
