// TlsStream: an asynchronous read and write stream (Asio's AsyncReadStream
// and AsyncWriteStream) over a beast::tcp_stream and a TlsChannel, so that
// Beast's http::async_read and http::async_write run unchanged over TLS.
// Every socket operation is one of the tcp_stream's, so its deadline
// (expires_after) bounds them all: the handshake too, which happens inside
// the first read and shares the first request's deadline.
//
// Use (HttpConnection's): at most one read and one write in flight; no write
// before the first request was read, i.e. before the handshake is done. A
// read writes only what the handshake (or an alert) produced, and only while
// no write is in flight; anything else the channel produced goes out in
// front of the next write.
//
// Bounds: one socket read (kChunk) is fed to the channel and decrypted before
// the next, so the channel holds at most one read and a partial record.
#pragma once

#include "transport/tls.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/system/errc.hpp>

#include <memory>
#include <string>

namespace chat::transport {

class TlsStream {
 public:
  using next_layer_type = boost::beast::tcp_stream;
  using executor_type = next_layer_type::executor_type;
  static constexpr std::size_t kChunk = 16 * 1024 + 512;  // a full record and its overhead

  TlsStream(next_layer_type& next, TlsChannel& channel) : next_(next), channel_(channel) {}

  executor_type get_executor() noexcept { return next_.get_executor(); }
  next_layer_type& next_layer() noexcept { return next_; }

  template <class MutableBufferSequence, class ReadToken>
  auto async_read_some(const MutableBufferSequence& buffers, ReadToken&& token) {
    return boost::asio::async_compose<ReadToken, void(boost::system::error_code, std::size_t)>(
        ReadOp<MutableBufferSequence>{*this, buffers}, token, next_);
  }

  template <class ConstBufferSequence, class WriteToken>
  auto async_write_some(const ConstBufferSequence& buffers, WriteToken&& token) {
    return boost::asio::async_compose<WriteToken, void(boost::system::error_code, std::size_t)>(
        WriteOp<ConstBufferSequence>{*this, buffers}, token, next_);
  }

 private:
  static boost::system::error_code tls_error() {
    return boost::system::errc::make_error_code(boost::system::errc::protocol_error);
  }

  template <class Buffers>
  struct ReadOp {
    enum class State { start, posted, reading, flushing };
    TlsStream& s;
    Buffers buffers;
    State state = State::start;
    std::size_t done = 0;  // plaintext read, delivered after a flush
    boost::system::error_code result{};

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}, std::size_t n = 0) {
      namespace asio = boost::asio;
      switch (state) {
        case State::start:
          break;
        case State::posted:
          return self.complete(result, done);
        case State::reading:
          if (ec) return self.complete(ec, 0);
          s.channel_.feed(s.in_.get(), n);
          break;
        case State::flushing:
          s.flushing_ = false;
          s.flush_.clear();
          if (ec) return self.complete(ec, 0);
          if (done > 0 || result) return self.complete(result, done);
          break;
      }
      if (asio::buffer_size(buffers) == 0) return finish(self, {}, 0);
      // Decrypt what the channel holds into the caller's buffers.
      std::size_t got = 0;
      auto status = TlsChannel::Status::want_input;
      for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
           ++it) {
        asio::mutable_buffer b(*it);
        while (b.size() > 0) {
          const auto r = s.channel_.read(static_cast<char*>(b.data()), b.size());
          status = r.status;
          if (status != TlsChannel::Status::ok) break;
          b += r.n;
          got += r.n;
        }
        if (status != TlsChannel::Status::ok) break;
      }
      boost::system::error_code out_ec;
      if (got == 0 && status == TlsChannel::Status::closed) out_ec = asio::error::eof;
      if (got == 0 && status == TlsChannel::Status::error) out_ec = tls_error();
      // What the handshake wrote goes out first (never beside a write).
      if (s.channel_.pending_output() > 0 && !s.writing_ && !s.flushing_) {
        done = got;
        result = out_ec;
        state = State::flushing;
        s.flushing_ = true;
        s.channel_.take_output(s.flush_);
        return asio::async_write(s.next_, asio::buffer(s.flush_), std::move(self));
      }
      if (got > 0 || out_ec) return finish(self, out_ec, got);
      // Nothing yet: read more ciphertext.
      s.channel_.trim();
      if (!s.in_) s.in_ = std::make_unique<char[]>(kChunk);
      state = State::reading;
      s.next_.async_read_some(asio::buffer(s.in_.get(), kChunk), std::move(self));
    }

    // Completing inside the initiating call would run the handler there:
    // post instead.
    template <class Self>
    void finish(Self& self, boost::system::error_code ec, std::size_t n) {
      if (state != State::start) return self.complete(ec, n);
      state = State::posted;
      result = ec;
      done = n;
      boost::asio::post(s.get_executor(), std::move(self));
    }
  };

  template <class Buffers>
  struct WriteOp {
    enum class State { start, posted, writing };
    TlsStream& s;
    Buffers buffers;
    State state = State::start;
    std::size_t n = 0;
    boost::system::error_code result{};

    template <class Self>
    void operator()(Self& self, boost::system::error_code ec = {}, std::size_t = 0) {
      namespace asio = boost::asio;
      switch (state) {
        case State::start:
          break;
        case State::posted:
          return self.complete(result, 0);
        case State::writing:
          s.writing_ = false;
          s.channel_.trim();
          // A large response's ciphertext is not kept for the next one.
          if (s.out_.capacity() > 64 * 1024)
            std::string().swap(s.out_);
          else
            s.out_.clear();
          return self.complete(ec, ec ? 0 : n);
      }
      s.out_.clear();
      for (auto it = asio::buffer_sequence_begin(buffers); it != asio::buffer_sequence_end(buffers);
           ++it) {
        asio::const_buffer b(*it);
        if (!s.channel_.write(static_cast<const char*>(b.data()), b.size(), s.out_)) {
          state = State::posted;
          result = tls_error();
          return asio::post(s.get_executor(), std::move(self));
        }
        n += b.size();
      }
      state = State::writing;
      s.writing_ = true;
      asio::async_write(s.next_, asio::buffer(s.out_), std::move(self));
    }
  };

  next_layer_type& next_;
  TlsChannel& channel_;
  std::unique_ptr<char[]> in_;  // ciphertext read from the socket (made by the first read)
  std::string out_;             // ciphertext of the write in flight
  std::string flush_;           // handshake bytes being written by a read
  bool writing_ = false;
  bool flushing_ = false;
};

}  // namespace chat::transport
