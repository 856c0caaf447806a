// TlsChannel against an OpenSSL client in memory: the handshake, data both
// ways (one byte to many records), that the wire carries ciphertext only,
// close_notify, garbage and plain HTTP refused, the bound on what the channel
// keeps for the socket; and TlsContext's start-up errors.
#include "transport/tls.hpp"

#include <gtest/gtest.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

namespace chat::transport {
namespace {

namespace fs = std::filesystem;

// A self-signed EC certificate and its key written as PEM files.
struct CertFiles {
  fs::path dir, cert, key;
};

EVP_PKEY* make_key() {
  return EVP_EC_gen("P-256");
}

void write_pem(const fs::path& cert_path, const fs::path& key_path, EVP_PKEY* key) {
  X509* x = X509_new();
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  X509_set_issuer_name(x, name);
  X509_sign(x, key, EVP_sha256());
  FILE* f = std::fopen(cert_path.c_str(), "w");
  PEM_write_X509(f, x);
  std::fclose(f);
  f = std::fopen(key_path.c_str(), "w");
  PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
  X509_free(x);
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("chat-tls-test-" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
    EVP_PKEY* key = make_key();
    ASSERT_NE(key, nullptr);
    write_pem(dir_ / "cert.pem", dir_ / "key.pem", key);
    EVP_PKEY_free(key);
    context_ =
        std::make_unique<TlsContext>((dir_ / "cert.pem").string(), (dir_ / "key.pem").string());

    client_ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx_, SSL_VERIFY_PEER, nullptr);
    ASSERT_EQ(SSL_CTX_load_verify_locations(client_ctx_, (dir_ / "cert.pem").c_str(), nullptr), 1);
    client_ = SSL_new(client_ctx_);
    c_in_ = BIO_new(BIO_s_mem());
    c_out_ = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(c_in_, -1);
    BIO_set_mem_eof_return(c_out_, -1);
    SSL_set_bio(client_, c_in_, c_out_);
    SSL_set_connect_state(client_);
    SSL_set_tlsext_host_name(client_, "localhost");
    static const unsigned char alpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_set_alpn_protos(client_, alpn, sizeof alpn);
    server_ = std::make_unique<TlsChannel>(*context_);
  }

  void TearDown() override {
    server_.reset();
    SSL_free(client_);
    SSL_CTX_free(client_ctx_);
    context_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Everything the client wrote, as the server's socket would read it.
  std::string client_wire() {
    std::string out;
    char buf[4096];
    int n;
    while ((n = BIO_read(c_out_, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<std::size_t>(n));
    return out;
  }
  // The server's plaintext from what was fed so far.
  std::string server_read(TlsChannel::Status* last = nullptr) {
    std::string out;
    char buf[1000];
    for (;;) {
      const auto r = server_->read(buf, sizeof buf);
      if (r.status != TlsChannel::Status::ok) {
        if (last) *last = r.status;
        return out;
      }
      out.append(buf, r.n);
    }
  }
  void to_client(const std::string& wire) {
    BIO_write(c_in_, wire.data(), static_cast<int>(wire.size()));
  }
  std::string client_read() {
    std::string out;
    char buf[4096];
    int n;
    while ((n = SSL_read(client_, buf, sizeof buf)) > 0)
      out.append(buf, static_cast<std::size_t>(n));
    return out;
  }

  // Shuttle the handshake until both sides are done.
  void handshake() {
    for (int round = 0; round < 10; ++round) {
      const int r = SSL_do_handshake(client_);
      const auto wire = client_wire();
      if (!wire.empty()) server_->feed(wire.data(), wire.size());
      EXPECT_EQ(server_read(), "");  // no application data during the handshake
      std::string back;
      server_->take_output(back);
      if (!back.empty()) to_client(back);
      if (r == 1 && server_->handshake_done()) return;
    }
    FAIL() << "the handshake did not finish";
  }

  fs::path dir_;
  std::unique_ptr<TlsContext> context_;
  SSL_CTX* client_ctx_ = nullptr;
  SSL* client_ = nullptr;
  BIO* c_in_ = nullptr;
  BIO* c_out_ = nullptr;
  std::unique_ptr<TlsChannel> server_;
};

TEST_F(TlsTest, HandshakeThenDataBothWaysEncrypted) {
  handshake();
  EXPECT_GE(SSL_version(client_), TLS1_2_VERSION);
  const unsigned char* proto = nullptr;
  unsigned len = 0;
  SSL_get0_alpn_selected(client_, &proto, &len);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(proto), len), "http/1.1");

  const std::string request = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\r\n";
  ASSERT_EQ(SSL_write(client_, request.data(), static_cast<int>(request.size())),
            static_cast<int>(request.size()));
  const auto wire = client_wire();
  ASSERT_EQ(wire.find("socket.io"), std::string::npos) << "the client's bytes are ciphertext";
  // Fed in small pieces, as short socket reads would deliver it.
  std::string got;
  for (std::size_t i = 0; i < wire.size(); i += 7) {
    server_->feed(wire.data() + i, std::min<std::size_t>(7, wire.size() - i));
    got += server_read();
  }
  EXPECT_EQ(got, request);
  EXPECT_FALSE(server_->has_buffered_input());

  const std::string answer = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
  std::string out;
  ASSERT_TRUE(server_->write(answer.data(), answer.size(), out));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.find("Switching"), std::string::npos) << "the server's bytes are ciphertext";
  EXPECT_EQ(server_->pending_output(), 0u);
  to_client(out);
  EXPECT_EQ(client_read(), answer);
}

TEST_F(TlsTest, LargeWriteIsSealedRecordByRecord) {
  handshake();
  std::string big(200 * 1024, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::string out;
  ASSERT_TRUE(server_->write(big.data(), big.size(), out));
  EXPECT_GT(out.size(), big.size());
  EXPECT_LT(out.size(), big.size() + 64 * (big.size() / 16384 + 1));
  EXPECT_EQ(server_->pending_output(), 0u) << "nothing stays behind in the channel";
  to_client(out);
  EXPECT_EQ(client_read(), big);

  // And the other way, in one feed.
  ASSERT_EQ(SSL_write(client_, big.data(), static_cast<int>(big.size())),
            static_cast<int>(big.size()));
  const auto wire = client_wire();
  server_->feed(wire.data(), wire.size());
  EXPECT_TRUE(server_->has_buffered_input());
  EXPECT_EQ(server_read(), big);

  // Once idle, the grown buffers go; the session goes on over fresh ones.
  server_->trim();
  const std::string ping = "small after a burst";
  ASSERT_EQ(SSL_write(client_, ping.data(), static_cast<int>(ping.size())),
            static_cast<int>(ping.size()));
  const auto w2 = client_wire();
  server_->feed(w2.data(), w2.size());
  EXPECT_EQ(server_read(), ping);
  out.clear();
  ASSERT_TRUE(server_->write(ping.data(), ping.size(), out));
  to_client(out);
  EXPECT_EQ(client_read(), ping);
}

TEST_F(TlsTest, CloseNotifyIsClosed) {
  handshake();
  SSL_shutdown(client_);
  const auto wire = client_wire();
  server_->feed(wire.data(), wire.size());
  TlsChannel::Status last{};
  EXPECT_EQ(server_read(&last), "");
  EXPECT_EQ(last, TlsChannel::Status::closed);
  server_->shutdown();
  EXPECT_GT(server_->pending_output(), 0u);  // our close_notify
}

TEST_F(TlsTest, PlainHttpIsAnError) {
  const std::string plain = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  server_->feed(plain.data(), plain.size());
  TlsChannel::Status last{};
  EXPECT_EQ(server_read(&last), "");
  EXPECT_EQ(last, TlsChannel::Status::error);
  EXPECT_FALSE(server_->error().empty());
  EXPECT_EQ(ERR_peek_error(), 0u) << "the thread's error queue is left empty";
}

TEST_F(TlsTest, GarbageAfterHandshakeIsAnError) {
  handshake();
  std::string garbage(5000, '\x17');  // application_data records of nonsense
  server_->feed(garbage.data(), garbage.size());
  TlsChannel::Status last{};
  EXPECT_EQ(server_read(&last), "");
  EXPECT_EQ(last, TlsChannel::Status::error);
}

TEST_F(TlsTest, HandshakeNeverFinishedHoldsNoData) {
  // A ClientHello cut short: the channel waits for more and offers nothing.
  SSL_do_handshake(client_);
  const auto hello = client_wire();
  server_->feed(hello.data(), hello.size() / 2);
  TlsChannel::Status last{};
  EXPECT_EQ(server_read(&last), "");
  EXPECT_EQ(last, TlsChannel::Status::want_input);
  EXPECT_FALSE(server_->handshake_done());
  EXPECT_EQ(server_->pending_output(), 0u);
}

TEST(TlsContextTest, StartupErrorsNameTheFile) {
  const auto dir = fs::temp_directory_path() / "chat-tls-context-test";
  fs::create_directories(dir);
  EVP_PKEY* a = make_key();
  EVP_PKEY* b = make_key();
  write_pem(dir / "a.pem", dir / "a-key.pem", a);
  write_pem(dir / "b.pem", dir / "b-key.pem", b);
  EVP_PKEY_free(a);
  EVP_PKEY_free(b);
  const auto message = [&](const fs::path& cert, const fs::path& key) -> std::string {
    try {
      TlsContext c(cert.string(), key.string());
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    return {};
  };
  EXPECT_EQ(message(dir / "a.pem", dir / "a-key.pem"), "");
  const auto missing = message(dir / "a.pem", dir / "none.pem");
  EXPECT_NE(missing.find((dir / "none.pem").string()), std::string::npos) << missing;
  const auto mismatch = message(dir / "a.pem", dir / "b-key.pem");
  EXPECT_NE(mismatch.find("does not match"), std::string::npos) << mismatch;
  EXPECT_NE(mismatch.find((dir / "b-key.pem").string()), std::string::npos) << mismatch;
  const auto not_pem = message(dir / "a-key.pem", dir / "a-key.pem");
  EXPECT_NE(not_pem.find("--tls-cert"), std::string::npos) << not_pem;
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace chat::transport
