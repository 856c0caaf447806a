// CorkedStream; see corked_stream.hpp.
#include "transport/corked_stream.hpp"

#include "protocol/websocket.hpp"

#include <boost/asio/write.hpp>

namespace chat::transport {

namespace {
// Payloads up to this size are copied into the batch; larger ones are
// referenced (they are shared by every receiver of a broadcast).
constexpr std::size_t kCopyLimit = 1024;
// A batch buffer that grew past this is released after its write, so a burst
// does not pin memory on every connection.
constexpr std::size_t kKeepCapacity = 16 * 1024;
}  // namespace

void CorkedStream::Batch::clear() {
  if (bytes.capacity() > kKeepCapacity)
    std::string().swap(bytes);
  else
    bytes.clear();
  if (chunks.capacity() > 64)
    std::vector<Chunk>().swap(chunks);
  else
    chunks.clear();
  size = 0;
}

namespace {
// The buffers of the batch being filled come from here and go back here
// once written, so a connection that is not writing holds no batch memory:
// one set per worker thread, not one per connection. A connection keeps its
// own only while a write of its is in flight (then what arrives meanwhile
// fills a second batch).
struct Spare {
  std::string bytes;
  std::vector<boost::asio::const_buffer> iov;
};
thread_local Spare t_spare;
template <class Chunks>
Chunks& spare_chunks() {
  thread_local Chunks chunks;
  return chunks;
}
}  // namespace

void CorkedStream::borrow(Batch& b) {
  if (b.size != 0 || !b.chunks.empty()) return;
  std::swap(b.bytes, t_spare.bytes);
  std::swap(b.chunks, spare_chunks<std::vector<Chunk>>());
}

void CorkedStream::give_back(Batch& b) {
  b.clear();
  auto& chunks = spare_chunks<std::vector<Chunk>>();
  if (b.bytes.capacity() > t_spare.bytes.capacity()) std::swap(b.bytes, t_spare.bytes);
  if (b.chunks.capacity() > chunks.capacity()) std::swap(b.chunks, chunks);
  std::string().swap(b.bytes);
  std::vector<Chunk>().swap(b.chunks);
}

void CorkedStream::append_copy(const char* data, std::size_t n) {
  if (n == 0) return;
  auto& b = filling_;
  borrow(b);
  if (b.chunks.empty() || b.chunks.back().ref)
    b.chunks.push_back(Chunk{nullptr, b.bytes.size(), 0});
  b.bytes.append(data, n);
  b.chunks.back().size += n;
  b.size += n;
}

bool CorkedStream::admit_control(std::size_t n) {
  if (error_) return false;
  if (control_limit_ && !control_limit_(n)) {
    overflowed_ = true;
    error_ = boost::asio::error::no_buffer_space;
    filling_.clear();
    return false;
  }
  return true;
}

bool CorkedStream::write_control(std::string_view bytes) {
  if (!admit_control(bytes.size())) return false;
  append_copy(bytes.data(), bytes.size());
  start();
  return true;
}

void CorkedStream::write_frame(bool binary, std::shared_ptr<const std::string> payload,
                               bool compressed) {
  if (error_) return;
  const std::size_t len = payload ? payload->size() : 0;
  unsigned char header[10];
  const auto h = protocol::ws::frame_header(
      binary ? protocol::ws::Opcode::binary : protocol::ws::Opcode::text, len, header, compressed);
  append_copy(reinterpret_cast<const char*>(header), h);
  if (len <= kCopyLimit) {
    append_copy(payload ? payload->data() : nullptr, len);
  } else {
    borrow(filling_);
    filling_.chunks.push_back(Chunk{std::move(payload), 0, len});
    filling_.size += len;
  }
  start();
}

void CorkedStream::uncork() {
  if (corked_ > 0) --corked_;
  start();
}

void CorkedStream::start() {
  if (corked_ > 0 || writing_ || error_) return;
  if (filling_.size == 0 && !(tls_ && tls_->pending_output() > 0)) return;
  auto owner = owner_.lock();
  if (!owner) return;  // the connection is going away
  std::swap(filling_, sending_);
  if (tls_ && !seal(sending_)) {
    error_ = boost::asio::error::connection_aborted;
    writing_ = true;
    boost::asio::post(get_executor(), [this, owner = std::move(owner)] { on_write(error_); });
    return;
  }
  auto& iov = t_spare.iov;
  iov.clear();
  for (const auto& c : sending_.chunks) {
    const char* base = c.ref ? c.ref->data() : sending_.bytes.data();
    iov.emplace_back(base + c.offset, c.size);
  }
  ++socket_writes_;
  // Write now if the socket takes it: the usual case, and it costs no
  // asynchronous operation. Only what the kernel did not take waits for the
  // socket to become writable.
  auto& sock = next_;
  boost::system::error_code ec;
  if (!non_blocking_) {
    sock.non_blocking(true, ec);
    non_blocking_ = !ec;
  }
  std::size_t written = 0;
  if (non_blocking_) {
    written = sock.write_some(iov, ec);
    if (!ec && written == sending_.size) {
      give_back(sending_);
      notify_drained();
      return;
    }
    if (ec && ec != boost::asio::error::would_block && ec != boost::asio::error::try_again) {
      // Report it from the event loop, not from inside the caller's loop.
      writing_ = true;
      boost::asio::post(get_executor(), [this, owner = std::move(owner), ec] { on_write(ec); });
      return;
    }
  }
  // Skip what was written.
  std::size_t skip = written;
  iov_.assign(iov.begin(), iov.end());  // kept while the write is in flight
  auto it = iov_.begin();
  while (skip > 0 && skip >= it->size()) {
    skip -= it->size();
    ++it;
  }
  iov_.erase(iov_.begin(), it);
  if (skip > 0) iov_.front() += skip;
  writing_ = true;
  arm_write_timer();
  boost::asio::async_write(sock, iov_,
                           [this, owner = std::move(owner)](const boost::system::error_code& e,
                                                            std::size_t) { on_write(e); });
}

namespace {
// Ciphertext is sealed into this and the batch's plaintext buffer takes its
// place here, so the two buffers alternate and neither is made per write.
thread_local std::string t_sealed;
}  // namespace

bool CorkedStream::seal(Batch& b) {
  auto& out = t_sealed;
  out.clear();
  tls_->take_output(out);
  for (const auto& c : b.chunks) {
    const char* base = c.ref ? c.ref->data() : b.bytes.data();
    if (!tls_->write(base + c.offset, c.size, out)) {
      b.clear();
      return false;
    }
  }
  tls_->trim();
  b.clear();  // the shared payloads are sealed: let them go
  b.bytes.swap(out);
  if (out.capacity() > kKeepCapacity) std::string().swap(out);
  b.chunks.push_back(Chunk{nullptr, 0, b.bytes.size()});
  b.size = b.bytes.size();
  return true;
}

void CorkedStream::arm_write_timer() {
  if (write_timeout_.count() <= 0) return;
  if (!timer_) timer_ = std::make_unique<boost::asio::steady_timer>(get_executor());
  timer_->expires_after(write_timeout_);
  timer_->async_wait(
      [this, owner = owner_, gen = socket_writes_](const boost::system::error_code& ec) {
        if (ec || !owner.lock() || !writing_ || gen != socket_writes_) return;
        // The peer did not take this write within write_timeout: give up on it. Closing the
        // socket completes the write (and Beast's read) with an error.
        timed_out_ = true;
        if (!error_) error_ = boost::asio::error::timed_out;
        boost::system::error_code ignored;
        next_.close(ignored);
      });
}

void CorkedStream::notify_drained() {
  if (drained_ && (error_ || (!writing_ && filling_.size == 0))) {
    auto then = std::move(drained_);
    drained_ = nullptr;
    then();
  }
}

void CorkedStream::on_write(const boost::system::error_code& ec) {
  writing_ = false;
  if (timer_) timer_->cancel();
  give_back(sending_);
  std::vector<boost::asio::const_buffer>().swap(iov_);
  if (ec && !error_) error_ = ec;
  if (error_) filling_.clear();      // never to be written: release the payloads now
  if (on_written_) on_written_(ec);  // may queue more frames (and start writing them)
  start();
  notify_drained();
}

void CorkedStream::when_drained(std::function<void()> then) {
  if (error_ || (!writing_ && filling_.size == 0)) {
    // Not inline: Beast expects its teardown to complete asynchronously.
    boost::asio::post(get_executor(), std::move(then));
    return;
  }
  drained_ = std::move(then);
}

void teardown(boost::beast::role_type role, CorkedStream& stream, boost::system::error_code& ec) {
  using boost::beast::websocket::teardown;
  // The blocking teardown reads until the peer closes: undo non-blocking mode.
  auto& sock = stream.next_layer();
  sock.non_blocking(false, ec);
  teardown(role, sock, ec);
}

}  // namespace chat::transport
