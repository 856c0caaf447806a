// CorkedStream: the write side of a WebSocket over a TCP socket. It gathers
// outgoing bytes, so that many WebSocket frames leave in one write call
// instead of one system call each.
//
// The connection appends complete server frames (unmasked, FIN set) with
// write_frame(), and its own bytes (the 101 answer, pongs, close frames) with
// write_control(); they are copied in order behind whatever is already queued.
// So every frame is whole on the wire and nothing interleaves. One socket
// write is in flight at a time; what arrives meanwhile waits in a second batch
// and leaves when the first is done. It is also an asynchronous stream for
// Beast (async_read_some, async_write_some, teardown), so a Beast WebSocket
// can run over it: the tests use that to check its frames with Beast's reader.
//
// Writes are tried synchronously on the non-blocking socket first; an
// asynchronous write is started only for what the kernel did not take.
//
// With a TLS channel (set_tls), each batch is sealed into one buffer of
// ciphertext just before its socket write; without one the code path is the
// plain one. Beast's reads (async_read_some) are plain only: over TLS the
// connection decrypts after its own reads (WsConnection).
//
// Small payloads are copied into the batch (one contiguous buffer); large
// shared payloads are referenced, not copied, and written with gather I/O.
//
// Bounds: control bytes (pongs above all: a peer that sends pings and never
// reads would otherwise queue them without end) are refused once the owner's
// limit says they do not fit; the write fails with no_buffer_space and
// overflowed() turns true. An asynchronous socket write that takes longer
// than the write timeout closes the socket; timed_out() turns true.
#pragma once

#include "transport/tls.hpp"

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/bind_handler.hpp>
#include <boost/beast/core/role.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace chat::transport {

class CorkedStream {
 public:
  using next_layer_type = boost::asio::ip::tcp::socket;
  using executor_type = next_layer_type::executor_type;
  // Called after each asynchronous socket write completes (ec set when it
  // failed), and once when a write fails. A write the kernel takes at once
  // does not call it: the caller sees writing() false and goes on itself.
  using WrittenHandler = std::function<void(const boost::system::error_code&)>;

  // Answers whether n more control bytes may be queued.
  using ControlLimit = std::function<bool(std::size_t n)>;

  explicit CorkedStream(boost::asio::ip::tcp::socket socket) : next_(std::move(socket)) {}

  executor_type get_executor() noexcept { return next_.get_executor(); }
  next_layer_type& next_layer() noexcept { return next_; }
  const next_layer_type& next_layer() const noexcept { return next_; }

  // owner is kept alive while a socket write is in flight.
  void set_owner(std::weak_ptr<void> owner, WrittenHandler on_written) {
    owner_ = std::move(owner);
    on_written_ = std::move(on_written);
  }

  // Append one complete unfragmented frame (text or binary) and start writing
  // (unless corked). compressed: the payload is permessage-deflate (RSV1).
  void write_frame(bool binary, std::shared_ptr<const std::string> payload,
                   bool compressed = false);
  // Append bytes the connection wrote itself (a control frame, the 101
  // answer), if the limit lets them in; false (and overflowed()) when not.
  bool write_control(std::string_view bytes);
  // Between cork() and uncork(), frames only collect; uncork() writes them
  // all at once. The write is tried at once (non-blocking); only what the
  // socket does not take becomes an asynchronous write.
  void cork() noexcept { ++corked_; }
  void uncork();

  // The connection's TLS session: from now on every batch is sealed.
  void set_tls(std::unique_ptr<TlsChannel> tls) noexcept { tls_ = std::move(tls); }
  TlsChannel* tls() const noexcept { return tls_.get(); }
  // Write what the TLS channel produced by itself (an alert, a key update).
  void flush_tls() { start(); }

  void set_limits(ControlLimit control_limit, std::chrono::milliseconds write_timeout) {
    control_limit_ = std::move(control_limit);
    write_timeout_ = write_timeout;
  }

  // Bytes waiting for the next socket write (not counting the one in flight).
  std::size_t waiting_bytes() const noexcept { return filling_.size; }
  // Bytes held: waiting and in flight.
  std::size_t buffered_bytes() const noexcept { return filling_.size + sending_.size; }
  bool overflowed() const noexcept { return overflowed_; }
  bool timed_out() const noexcept { return timed_out_; }
  bool writing() const noexcept { return writing_; }
  bool failed() const noexcept { return static_cast<bool>(error_); }
  std::uint64_t socket_writes() const noexcept { return socket_writes_; }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    return next_.async_read_some(buffers, std::forward<ReadToken>(token));
  }

  // Beast's writes: control bytes, copied behind the queued frames, completed at once.
  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    return boost::asio::async_initiate<WriteToken, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const ConstBufferSequence& bufs) {
          boost::system::error_code ec = error_;
          std::size_t n = 0;
          if (!ec && !admit_control(boost::asio::buffer_size(bufs))) ec = error_;
          if (!ec) {
            for (auto it = boost::asio::buffer_sequence_begin(bufs);
                 it != boost::asio::buffer_sequence_end(bufs); ++it) {
              boost::asio::const_buffer b(*it);
              append_copy(static_cast<const char*>(b.data()), b.size());
              n += b.size();
            }
            start();
          }
          boost::asio::post(get_executor(),
                            boost::beast::bind_front_handler(std::move(handler), ec, n));
        },
        token, buffers);
  }

  // Run `then` once everything queued has been written (or writing failed).
  void when_drained(std::function<void()> then);

 private:
  struct Chunk {
    std::shared_ptr<const std::string> ref;  // null: the bytes are in Batch::bytes
    std::size_t offset = 0;
    std::size_t size = 0;
  };
  struct Batch {
    std::string bytes;
    std::vector<Chunk> chunks;
    std::size_t size = 0;
    void clear();
  };

  void append_copy(const char* data, std::size_t n);
  static void borrow(Batch& b);     // an empty batch takes the worker's spare buffers
  static void give_back(Batch& b);  // a written batch returns them (and keeps none)
  bool admit_control(std::size_t n);
  void start();
  // Replace the batch's plaintext by its ciphertext; false when sealing failed.
  bool seal(Batch& b);
  void on_write(const boost::system::error_code& ec);
  void notify_drained();
  void arm_write_timer();

  next_layer_type next_;
  std::unique_ptr<TlsChannel> tls_;  // null: plain TCP
  // The write deadline: made by the first write the kernel does not take at
  // once (most connections never have one).
  std::unique_ptr<boost::asio::steady_timer> timer_;
  ControlLimit control_limit_;
  std::chrono::milliseconds write_timeout_{0};
  std::weak_ptr<void> owner_;
  WrittenHandler on_written_;
  std::function<void()> drained_;
  Batch filling_;
  Batch sending_;
  std::vector<boost::asio::const_buffer> iov_;
  boost::system::error_code error_;
  bool writing_ = false;
  bool non_blocking_ = false;
  bool overflowed_ = false;
  bool timed_out_ = false;
  int corked_ = 0;
  std::uint64_t socket_writes_ = 0;
};

// Closing a WebSocket tears the TCP connection down; queued frames (the close
// frame among them) are written first. Found by Beast through ADL.
template <class TeardownHandler>
void async_teardown(boost::beast::role_type role, CorkedStream& stream, TeardownHandler&& handler) {
  auto h = std::make_shared<std::decay_t<TeardownHandler>>(std::forward<TeardownHandler>(handler));
  stream.when_drained([&stream, role, h] {
    using boost::beast::websocket::async_teardown;
    async_teardown(role, stream.next_layer(), std::move(*h));
  });
}

void teardown(boost::beast::role_type role, CorkedStream& stream, boost::system::error_code& ec);

}  // namespace chat::transport
