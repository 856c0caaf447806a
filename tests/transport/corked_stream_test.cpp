// CorkedStream under websocket::stream<CorkedStream> (the server side), over
// real loopback TCP sockets, read by a plain Beast WebSocket client. Everything
// runs on one io_context in the test thread; run_until() drives it until a
// condition holds (bounded, so a hang fails the test instead of blocking).
#include "transport/corked_stream.hpp"

#include <gtest/gtest.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using chat::transport::CorkedStream;
using ServerWs = websocket::stream<CorkedStream>;
using ClientWs = websocket::stream<beast::tcp_stream>;

// Kernel buffers for tests that need a socket write to stay in flight: with
// these, a multi-megabyte write cannot be taken by the kernel at once.
constexpr int kSmallBuffer = 16 * 1024;
constexpr std::size_t kBig = 4 * 1024 * 1024;

struct Frame {
  bool binary = false;
  std::string data;
};

// Distinct contents for every (id, position): a frame cut short, shifted or
// swapped with another one does not compare equal. Text stays ASCII (the
// client validates UTF-8).
std::string make_payload(int id, std::size_t size, bool binary) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) {
    const std::size_t v = static_cast<std::size_t>(id) * 37 + i * 11 + (i >> 8) * 5 + (i >> 16);
    s[i] = binary ? static_cast<char>(v & 0xFF) : static_cast<char>('!' + v % 94);
  }
  return s;
}

// Bytes on the wire for an unmasked server frame with this payload size.
std::size_t wire_size(std::size_t n) {
  return n + (n < 126 ? 2 : n <= 0xFFFF ? 4 : 10);
}

void expect_frames(const std::vector<Frame>& got, const std::vector<Frame>& sent) {
  ASSERT_EQ(got.size(), sent.size());
  for (std::size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(got[i].binary, sent[i].binary) << "frame " << i;
    EXPECT_EQ(got[i].data.size(), sent[i].data.size()) << "frame " << i;
    // Not EXPECT_EQ: a mismatch would print megabytes.
    EXPECT_TRUE(got[i].data == sent[i].data) << "frame " << i << " has other contents";
  }
}

class CorkedStreamTest : public ::testing::Test {
 protected:
  // Declared first: destroyed last, after the streams.
  asio::io_context ioc;
  std::unique_ptr<ServerWs> server;
  std::unique_ptr<ClientWs> client;
  std::shared_ptr<int> owner = std::make_shared<int>(0);

  // Every call of the CorkedStream callback (after each socket write).
  std::vector<beast::error_code> written;
  std::function<void(const beast::error_code&)> on_written_hook;

  // What the client read.
  std::vector<Frame> got;
  beast::flat_buffer client_buf;
  beast::error_code client_read_ec;
  bool client_read_done = false;

  // The server's read (needed for Beast to see pings and close frames).
  beast::flat_buffer server_buf;
  beast::error_code server_read_ec;
  bool server_read_done = false;

  CorkedStream& out() { return server->next_layer(); }

  void TearDown() override {
    // Cancel what is pending and let the handlers run while the streams exist.
    beast::error_code ignored;
    if (client) client->next_layer().socket().close(ignored);
    if (server) server->next_layer().next_layer().close(ignored);
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(500));
  }

  // Runs the io_context until pred() holds; false when it does not within the
  // limit or when nothing is left to run.
  template <class Pred>
  bool run_until(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(3000)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      if (ioc.stopped()) ioc.restart();
      if (ioc.run_one_for(std::chrono::milliseconds(50)) == 0 && ioc.stopped()) return pred();
    }
    return true;
  }

  // A connected pair: server websocket::stream<CorkedStream> (accepted),
  // client websocket::stream<tcp_stream> (handshake done).
  void connect(bool small_buffers = false) {
    tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    tcp::socket client_socket(ioc);
    client_socket.open(tcp::v4());
    if (small_buffers)
      client_socket.set_option(asio::socket_base::receive_buffer_size(kSmallBuffer));
    bool server_ready = false, client_ready = false;
    beast::error_code server_ec, client_ec;
    acceptor.async_accept([&](beast::error_code ec, tcp::socket s) {
      if (ec) {
        server_ec = ec;
        server_ready = true;
        return;
      }
      if (small_buffers) s.set_option(asio::socket_base::send_buffer_size(kSmallBuffer));
      server = std::make_unique<ServerWs>(std::move(s));
      out().set_owner(owner, [this](const beast::error_code& e) {
        written.push_back(e);
        if (on_written_hook) on_written_hook(e);
      });
      server->async_accept([&](beast::error_code e) {
        server_ec = e;
        server_ready = true;
      });
    });
    client = std::make_unique<ClientWs>(std::move(client_socket));
    client->next_layer().async_connect(acceptor.local_endpoint(), [&](beast::error_code ec) {
      if (ec) {
        client_ec = ec;
        client_ready = true;
        return;
      }
      client->async_handshake("127.0.0.1", "/", [&](beast::error_code e) {
        client_ec = e;
        client_ready = true;
      });
    });
    ASSERT_TRUE(run_until([&] { return server_ready && client_ready; }));
    ASSERT_FALSE(server_ec) << server_ec.message();
    ASSERT_FALSE(client_ec) << client_ec.message();
    ASSERT_TRUE(server->is_open());
  }

  // The client reads until every frame of `sent` arrived, which must be
  // exactly `sent`; then the server's writing must be over.
  void receive_all(const std::vector<Frame>& sent) {
    client_read();
    ASSERT_TRUE(run_until([&] { return got.size() >= sent.size() || client_read_done; }))
        << "got " << got.size() << " of " << sent.size();
    EXPECT_FALSE(client_read_done) << client_read_ec.message();
    expect_frames(got, sent);
    ASSERT_TRUE(run_until([&] { return !out().writing(); }));
  }

  // The client reads messages until an error (close, reset).
  void client_read() {
    client->async_read(client_buf, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        client_read_ec = ec;
        client_read_done = true;
        return;
      }
      got.push_back(Frame{!client->got_text(), beast::buffers_to_string(client_buf.data())});
      client_buf.consume(client_buf.size());
      client_read();
    });
  }

  void server_read() {
    server->async_read(server_buf, [this](beast::error_code ec, std::size_t) {
      if (ec) {
        server_read_ec = ec;
        server_read_done = true;
        return;
      }
      server_buf.consume(server_buf.size());
      server_read();
    });
  }

  void write(const Frame& f) {
    out().write_frame(f.binary, std::make_shared<const std::string>(f.data));
  }

  // The client drops the connection with a reset (SO_LINGER 0), not a FIN.
  void reset_client() {
    auto& s = client->next_layer().socket();
    s.set_option(tcp::socket::linger(true, 0));
    beast::error_code ignored;
    s.close(ignored);
  }
};

// (1) Corked frames of every header size, text and binary, leave in one socket
// write and arrive whole and in order.
TEST_F(CorkedStreamTest, MixedSizesInOneTurnArriveWholeInOrderInOneWrite) {
  ASSERT_NO_FATAL_FAILURE(connect());
  const std::size_t sizes[] = {0, 1, 125, 126, 127, 1024, 1025, 65535, 65536, 200000};
  std::vector<Frame> sent;
  int id = 0;
  for (bool binary : {false, true})
    for (auto n : sizes) sent.push_back(Frame{binary, make_payload(id++, n, binary)});
  // Interleave text and binary, small and large.
  std::rotate(sent.begin(), sent.begin() + 3, sent.end());
  std::swap(sent[1], sent[15]);
  std::set<std::string> distinct;
  for (const auto& f : sent)
    if (!f.data.empty()) distinct.insert(f.data);
  ASSERT_EQ(distinct.size(), sent.size() - 2);  // all differ but the two empty ones

  auto& o = out();
  const auto writes_before = o.socket_writes();
  std::size_t wire = 0;
  o.cork();
  for (const auto& f : sent) {
    write(f);  // the caller's reference goes away at once
    wire += wire_size(f.data.size());
  }
  o.write_frame(true, nullptr);  // an empty binary frame without a payload object
  sent.push_back(Frame{true, ""});
  wire += wire_size(0);
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.waiting_bytes(), wire);
  EXPECT_EQ(o.socket_writes(), writes_before);
  o.uncork();
  const auto writes = o.socket_writes() - writes_before;
  EXPECT_EQ(writes, 1u);
  EXPECT_LT(writes, sent.size());

  ASSERT_NO_FATAL_FAILURE(receive_all(sent));
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);
  EXPECT_EQ(o.waiting_bytes(), 0u);
  EXPECT_FALSE(o.failed());
  for (const auto& ec : written) EXPECT_FALSE(ec) << ec.message();
}

// Payloads up to 1024 bytes are copied into the batch, larger ones are
// referenced until their write is done.
TEST_F(CorkedStreamTest, LargePayloadsAreReferencedUntilWritten) {
  ASSERT_NO_FATAL_FAILURE(connect());
  auto& o = out();
  auto small = std::make_shared<const std::string>(make_payload(1, 1024, false));
  auto large = std::make_shared<const std::string>(make_payload(2, 1025, true));
  o.cork();
  o.write_frame(false, small);
  o.write_frame(true, large);
  EXPECT_EQ(small.use_count(), 1);
  EXPECT_EQ(large.use_count(), 2);
  o.uncork();
  client_read();
  ASSERT_TRUE(run_until([&] { return (got.size() >= 2 && !o.writing()) || client_read_done; }));
  expect_frames(got, {Frame{false, *small}, Frame{true, *large}});
  EXPECT_EQ(large.use_count(), 1);
}

// More pieces in one batch than one gather write takes (copied and referenced
// payloads alternate): the rest follows, nothing is lost or reordered.
TEST_F(CorkedStreamTest, ManyPiecesInOneBatchArriveInOrder) {
  ASSERT_NO_FATAL_FAILURE(connect());
  auto& o = out();
  std::vector<Frame> sent;
  for (int i = 0; i < 600; ++i) {
    const bool binary = i % 3 == 0;
    const std::size_t n =
        i % 2 == 0 ? 1500 + static_cast<std::size_t>(i) : static_cast<std::size_t>(i % 50);
    sent.push_back(Frame{binary, make_payload(i, n, binary)});
  }
  const auto writes_before = o.socket_writes();
  o.cork();
  for (const auto& f : sent) write(f);
  o.uncork();
  ASSERT_NO_FATAL_FAILURE(receive_all(sent));
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);
  EXPECT_FALSE(o.failed());
}

// (2) Frames written (uncorked, one by one) while a large write is in flight
// wait in the second batch and follow it in order; frames queued from the
// written-callback follow them.
TEST_F(CorkedStreamTest, FramesWrittenDuringInFlightWriteArriveInOrder) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const auto writes_before = o.socket_writes();
  std::vector<Frame> sent;
  sent.push_back(Frame{true, make_payload(0, kBig, true)});
  write(sent.back());
  ASSERT_TRUE(o.writing()) << "the kernel took " << kBig << " bytes at once";
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);

  std::size_t wire = 0;
  for (int i = 1; i <= 30; ++i) {
    const bool binary = i % 2 == 0;
    const std::size_t n =
        i % 5 == 0 ? 3000 + static_cast<std::size_t>(i) : static_cast<std::size_t>(i) * 7;
    sent.push_back(Frame{binary, make_payload(i, n, binary)});
    write(sent.back());
    wire += wire_size(n);
    EXPECT_TRUE(o.writing());
  }
  EXPECT_EQ(o.waiting_bytes(), wire);
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);  // all of them wait for the first write

  // The first write's callback queues one more frame: it goes last.
  const Frame late{false, make_payload(99, 700, false)};
  bool late_written = false;
  on_written_hook = [&](const beast::error_code& ec) {
    if (ec || late_written) return;
    late_written = true;
    write(late);
  };
  sent.push_back(late);

  ASSERT_NO_FATAL_FAILURE(receive_all(sent));
  // The big frame, then everything queued meanwhile in one more write.
  EXPECT_EQ(o.socket_writes() - writes_before, 2u);
  EXPECT_LT(o.socket_writes() - writes_before, sent.size());
  ASSERT_FALSE(written.empty());
  for (const auto& ec : written) EXPECT_FALSE(ec) << ec.message();
  EXPECT_FALSE(o.failed());
  EXPECT_EQ(o.waiting_bytes(), 0u);
}

// The owner is kept alive while a socket write is in flight (and during the
// callback), released afterwards; without an owner nothing new is written.
TEST_F(CorkedStreamTest, OwnerIsKeptAliveDuringSocketWrite) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const Frame big{true, make_payload(1, kBig, true)};
  write(big);
  ASSERT_TRUE(o.writing());
  std::weak_ptr<int> weak = owner;
  owner.reset();
  EXPECT_FALSE(weak.expired());
  bool alive_in_callback = false;
  on_written_hook = [&](const beast::error_code&) { alive_in_callback = !weak.expired(); };

  client_read();
  ASSERT_TRUE(run_until([&] { return (got.size() >= 1 && !o.writing()) || client_read_done; }));
  expect_frames(got, {big});
  EXPECT_TRUE(alive_in_callback);
  EXPECT_TRUE(weak.expired());

  const auto writes = o.socket_writes();
  write(Frame{false, "nobody owns this"});
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.socket_writes(), writes);
}

// (3) A ping from the client is answered with a pong queued behind the data
// frames that were queued before it (a large write is in flight when it
// arrives); no frame is cut.
TEST_F(CorkedStreamTest, PingGetsPongBetweenIntactDataFrames) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const std::vector<Frame> before{Frame{false, make_payload(1, 10, false)},
                                  Frame{true, make_payload(2, kBig, true)},
                                  Frame{false, make_payload(3, 300, false)}};
  const std::vector<Frame> after{Frame{true, make_payload(4, 5000, true)},
                                 Frame{false, make_payload(5, 20, false)}};
  int pings = 0;
  // Frames written from the ping callback are queued before Beast's pong.
  server->control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind != websocket::frame_type::ping) return;
    ++pings;
    EXPECT_EQ(payload, "are-you-there");
    for (const auto& f : after) write(f);
  });
  // The client's view: "d" for a data frame (counted on completion of its
  // read), "pong:<payload>" for a pong.
  std::vector<std::string> pongs_at;  // "<data frames before it>:<payload>"
  client->control_callback([&](websocket::frame_type kind, beast::string_view payload) {
    if (kind == websocket::frame_type::pong)
      pongs_at.push_back(std::to_string(got.size()) + ":" + std::string(payload));
  });
  server_read();

  o.cork();
  for (const auto& f : before) write(f);
  o.uncork();
  ASSERT_TRUE(o.writing());
  bool ping_sent = false;
  beast::error_code ping_ec;
  client->async_ping("are-you-there", [&](beast::error_code ec) {
    ping_ec = ec;
    ping_sent = true;
  });
  client_read();

  std::vector<Frame> sent = before;
  sent.insert(sent.end(), after.begin(), after.end());
  ASSERT_TRUE(run_until([&] {
    return (got.size() >= sent.size() && !pongs_at.empty()) || client_read_done;
  })) << "got "
      << got.size() << " frames, " << pongs_at.size() << " pongs";
  EXPECT_FALSE(client_read_done) << client_read_ec.message();
  EXPECT_TRUE(ping_sent);
  EXPECT_FALSE(ping_ec) << ping_ec.message();
  EXPECT_EQ(pings, 1);
  expect_frames(got, sent);
  // The pong follows every data frame queued before it.
  ASSERT_EQ(pongs_at.size(), 1u);
  EXPECT_EQ(pongs_at[0], std::to_string(sent.size()) + ":are-you-there");
  EXPECT_FALSE(server_read_done) << server_read_ec.message();
  EXPECT_FALSE(o.failed());
}

// (4) The server closes after queued data: the client reads all of it, then
// the close (normal code, reason), and the server's close completes.
TEST_F(CorkedStreamTest, CloseFollowsQueuedData) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const std::vector<Frame> sent{
      Frame{false, make_payload(1, 100, false)}, Frame{true, make_payload(2, kBig, true)},
      Frame{false, make_payload(3, 70000, false)}, Frame{true, make_payload(4, 1, true)}};
  o.cork();
  for (const auto& f : sent) write(f);
  o.uncork();
  ASSERT_TRUE(o.writing());
  bool server_closed = false;
  beast::error_code server_close_ec;
  server->async_close(websocket::close_reason(websocket::close_code::normal, "bye"),
                      [&](beast::error_code ec) {
                        server_close_ec = ec;
                        server_closed = true;
                      });
  client_read();
  ASSERT_TRUE(run_until([&] { return client_read_done && server_closed; }));
  expect_frames(got, sent);
  EXPECT_EQ(client_read_ec, websocket::error::closed) << client_read_ec.message();
  EXPECT_EQ(client->reason().code, websocket::close_code::normal);
  EXPECT_EQ(client->reason().reason, "bye");
  EXPECT_FALSE(server_close_ec) << server_close_ec.message();
  EXPECT_FALSE(o.failed());
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.waiting_bytes(), 0u);
  // The teardown closed the socket.
  EXPECT_FALSE(o.next_layer().is_open());
}

// The client closes while the server has a large write in flight: Beast's
// close answer queues behind it, the teardown waits for it, both sides end
// cleanly.
TEST_F(CorkedStreamTest, PeerCloseIsAnsweredAfterQueuedData) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  write(Frame{true, make_payload(1, kBig, true)});
  ASSERT_TRUE(o.writing());
  server_read();
  bool client_closed = false;
  beast::error_code client_close_ec;
  client->async_close(websocket::close_code::going_away, [&](beast::error_code ec) {
    client_close_ec = ec;
    client_closed = true;
  });
  ASSERT_TRUE(run_until([&] { return client_closed && server_read_done; }));
  EXPECT_FALSE(client_close_ec) << client_close_ec.message();
  EXPECT_EQ(server_read_ec, websocket::error::closed) << server_read_ec.message();
  EXPECT_EQ(server->reason().code, websocket::close_code::going_away);
  EXPECT_FALSE(o.failed());
  EXPECT_FALSE(o.writing());
  ASSERT_TRUE(run_until([&] { return !o.next_layer().is_open(); }));
}

// (5a) The peer resets the connection: the next write fails (reported from
// the event loop through the callback), later writes are dropped, Beast's
// writes fail, and waiting for the drain does not hang.
TEST_F(CorkedStreamTest, WritesFailAfterPeerReset) {
  ASSERT_NO_FATAL_FAILURE(connect());
  auto& o = out();
  server_read();
  reset_client();
  ASSERT_TRUE(run_until([&] { return server_read_done; }));
  EXPECT_TRUE(server_read_ec);

  const auto writes = o.socket_writes();
  write(Frame{false, "after the reset"});
  EXPECT_TRUE(written.empty());  // not from inside write_frame
  ASSERT_TRUE(run_until([&] { return !written.empty(); }));
  ASSERT_EQ(written.size(), 1u);
  EXPECT_TRUE(written[0]) << "the write to a reset connection succeeded";
  EXPECT_TRUE(o.failed());
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.socket_writes(), writes + 1);

  // Dropped: nothing queued, no socket write.
  write(Frame{true, make_payload(1, 100000, true)});
  write(Frame{false, "x"});
  EXPECT_EQ(o.waiting_bytes(), 0u);
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.socket_writes(), writes + 1);

  // Beast's path: the write completes (later) with the error.
  bool beast_write_done = false;
  beast::error_code beast_write_ec;
  std::size_t beast_written = 1;
  o.async_write_some(asio::buffer("\x88\x00", 2), [&](beast::error_code ec, std::size_t n) {
    beast_write_ec = ec;
    beast_written = n;
    beast_write_done = true;
  });
  EXPECT_FALSE(beast_write_done);
  bool drained = false;
  o.when_drained([&] { drained = true; });
  EXPECT_FALSE(drained);
  ASSERT_TRUE(run_until([&] { return beast_write_done && drained; }));
  EXPECT_TRUE(beast_write_ec);
  EXPECT_EQ(beast_written, 0u);

  bool closed = false;
  server->async_close(websocket::close_code::normal, [&](beast::error_code) { closed = true; });
  ASSERT_TRUE(run_until([&] { return closed; }));
  EXPECT_EQ(written.size(), 1u);
}

// (5b) The peer resets while a large write is in flight: the asynchronous
// write fails, the callback gets the error, a pending drain wait ends, and
// what was queued behind it is not written.
TEST_F(CorkedStreamTest, InFlightWriteFailsWhenPeerResets) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const auto writes_before = o.socket_writes();
  write(Frame{true, make_payload(1, kBig, true)});
  ASSERT_TRUE(o.writing());
  write(Frame{false, "queued behind"});
  bool drained = false;
  o.when_drained([&] { drained = true; });
  reset_client();

  ASSERT_TRUE(run_until([&] { return !written.empty() && drained; }));
  ASSERT_EQ(written.size(), 1u);
  EXPECT_TRUE(written[0]) << "the in-flight write succeeded";
  EXPECT_TRUE(o.failed());
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);
  write(Frame{false, "after the failure"});
  EXPECT_FALSE(o.writing());
  EXPECT_EQ(o.socket_writes() - writes_before, 1u);
}

}  // namespace

// Beast's pongs count against the owner's limit: a peer that sends pings and
// does not read makes the stream refuse them, and the server's read fails.
TEST_F(CorkedStreamTest, PongsOverTheLimitFailTheRead) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  const std::size_t limit = kBig + 4096;
  o.set_limits([&](std::size_t n) { return o.buffered_bytes() + n <= limit; },
               std::chrono::milliseconds(0));
  server_read();
  write(Frame{true, make_payload(1, kBig, true)});  // stays in flight: the client does not read
  ASSERT_TRUE(o.writing());
  int pings = 0;
  std::function<void()> ping = [&] {
    client->async_ping("p", [&](beast::error_code ec) {
      if (ec || server_read_done || ++pings > 10000) return;
      ping();
    });
  };
  ping();
  ASSERT_TRUE(run_until([&] { return server_read_done; })) << pings << " pings sent";
  EXPECT_TRUE(o.overflowed());
  EXPECT_EQ(server_read_ec, asio::error::no_buffer_space) << server_read_ec.message();
  EXPECT_LE(o.buffered_bytes(), limit);
  EXPECT_LT(pings, 10000);
}

// A socket write that makes no progress for the write timeout closes the
// socket: the write completes with an error and timed_out() turns true.
TEST_F(CorkedStreamTest, StuckWriteTimesOut) {
  ASSERT_NO_FATAL_FAILURE(connect(true));
  auto& o = out();
  o.set_limits(nullptr, std::chrono::milliseconds(200));
  write(Frame{true, make_payload(1, kBig, true)});  // the client never reads
  ASSERT_TRUE(o.writing());
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(run_until([&] { return !written.empty(); }));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(150));
  EXPECT_TRUE(o.timed_out());
  EXPECT_TRUE(o.failed());
  EXPECT_TRUE(written.back()) << "the write completed without an error";
}
