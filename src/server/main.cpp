// chat-server: wires the layers together (workers, transport, bus, chat,
// endpoints), runs until SIGTERM/SIGINT, then drains and exits 0.
#include "admin/admin_ui.hpp"
#include "bus/factory.hpp"
#include "chat/chat_service.hpp"
#include "endpoints/endpoints.hpp"
#include "endpoints/publish_api.hpp"
#include "runtime/workers.hpp"
#include "server/config.hpp"
#include "server/conformance.hpp"
#include "server/metrics.hpp"
#include "transport/api.hpp"
#include "transport/ids.hpp"

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>

#include <malloc.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <iostream>
#include <thread>

using namespace chat;

namespace {

// Tells this process from an earlier one with the same replica id (a restart).
std::string random_suffix() {
  unsigned char b[8];
  transport::os_random(b, sizeof b);
  std::string out;
  for (unsigned char c : b) out += fmt::format("{:02x}", c);
  return out;
}

// Use every file descriptor the hard limit allows (connections are files).
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

endpoints::StaticFiles load_static(const server::Config& cfg) {
  endpoints::StaticFiles files;
  const auto pages = files.load_tree(cfg.static_root, "/");
  if (pages == 0) spdlog::warn("no web page: static root \"{}\" has no files", cfg.static_root);
  std::size_t bundle = 0;
  for (const char* name :
       {"socket.io.js", "socket.io.js.map", "socket.io.min.js", "socket.io.min.js.map",
        "socket.io.esm.min.js", "socket.io.esm.min.js.map"})
    bundle += files.load_file(cfg.client_dist + "/" + name, cfg.transport.path + name) ? 1 : 0;
  if (cfg.admin_ui) {
    // The Admin UI's page and its assets (not the source maps: 3 MB nobody needs).
    if (files.load_tree(cfg.admin_ui_dist, "/admin/", ".map") == 0)
      spdlog::warn("no Admin UI files in \"{}\" (run npm ci): /admin/ is not served",
                   cfg.admin_ui_dist);
  }
  if (bundle == 0)
    spdlog::warn("no socket.io client bundle in \"{}\" (run npm ci): the page cannot connect",
                 cfg.client_dist);
  return files;
}

}  // namespace

int main(int argc, char** argv) {
  auto cfg = server::parse_config(argc, argv);

  auto logger = spdlog::stdout_logger_mt("chat");
  logger->set_pattern(fmt::format("%Y-%m-%dT%H:%M:%S.%e %l [{}] %v", cfg.replica_id));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level));
  spdlog::flush_on(spdlog::level::info);
  raise_fd_limit();
  // Buffers of large messages come from mmap and go back to the system when
  // freed. By default glibc raises its mmap threshold after the first such
  // free and serves later ones from the heap, where they stay resident after
  // the connections that read them are idle or gone.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);

  const auto instance = cfg.replica_id + "#" + random_suffix();
  const unsigned threads =
      cfg.threads ? cfg.threads : std::max(1u, std::thread::hardware_concurrency());

  try {
    runtime::Workers workers(threads);
    auto server = transport::Server::create(workers, cfg.transport);

    bus::BusConfig bus_cfg;
    bus_cfg.amqp_url = cfg.amqp_url;
    bus_cfg.exchange = cfg.amqp_exchange;
    bus_cfg.instance_id = instance;
    bus_cfg.outbox_max = cfg.outbox_max;
    bus_cfg.max_message_bytes = cfg.amqp_max_message;
    bus_cfg.outbox_max_bytes = cfg.outbox_max_bytes;
    bus_cfg.history = cfg.history_stream != "off";
    if (bus_cfg.history) bus_cfg.stream = cfg.history_stream;
    bus_cfg.stream_max_age = cfg.history_max_age;
    bus_cfg.stream_max_bytes = cfg.history_max_bytes;
    bus_cfg.history_backfill_s = static_cast<int>(cfg.history_backfill_s);
    bus_cfg.history_partitions = cfg.history_partitions;
    auto bus = bus::make_bus(bus_cfg);

    std::unique_ptr<app::ChatService> chat;
    if (cfg.conformance) {
      server::install_conformance(*server);
    } else {
      app::ChatOptions opts;
      opts.replica_id = cfg.replica_id;
      opts.instance_id = instance;
      opts.limits = cfg.limits;
      opts.presence_ttl = std::chrono::milliseconds(cfg.presence_ttl_ms);
      opts.history = cfg.history;
      opts.history_rooms = cfg.history_rooms;
      opts.recovery_window = std::chrono::milliseconds(cfg.recovery_window_ms);
      opts.leave_grace = std::chrono::milliseconds(cfg.leave_grace_ms);
      // Connected sessions are named every alive interval: a quarter of the
      // window, between 1 and 30 s (a record outlives its socket by at most
      // window + interval).
      opts.session_alive_interval =
          std::chrono::milliseconds(std::clamp<long long>(cfg.recovery_window_ms / 4, 1000, 30000));
      opts.recovery_messages = cfg.recovery_messages;
      opts.verifier = cfg.verifier;
      opts.token_leeway = cfg.jwt.leeway;
      opts.room_policy = cfg.room_policy;
      if (cfg.verifier)
        spdlog::info("auth: jwt ({}){}", cfg.verifier->algorithms(),
                     cfg.jwt.issuer.empty() ? "" : ", issuer " + cfg.jwt.issuer);
      chat = std::make_unique<app::ChatService>(workers, *server, *bus, opts);
    }

    std::shared_ptr<admin::AdminUi> admin_ui;
    if (chat && cfg.admin_ui) {
      admin::AdminOptions ao;
      ao.auth = cfg.admin_ui_auth == "basic";
      ao.user = cfg.admin_ui_user;
      ao.password_hash = cfg.admin_ui_password_hash;
      ao.readonly = cfg.admin_ui_readonly;
      ao.development = cfg.admin_ui_mode == "development";
      ao.server_id = cfg.replica_id;
      ao.instance_id = instance;
      auto* c = chat.get();
      admin::ChatControl control;
      control.data = [c](transport::Socket& s) { return c->admin_data(s); };
      control.join = [c](transport::Socket& s, const std::string& r) { c->admin_join(s, r); };
      control.leave = [c](transport::Socket& s, const std::string& r) { c->admin_leave(s, r); };
      admin_ui = std::make_shared<admin::AdminUi>(workers, *server, *bus, std::move(ao),
                                                  std::move(control));
      auto* a = admin_ui.get();
      app::ChatService::AdminHooks hooks;
      hooks.envelope = [a](const bus::EnvelopePtr& e) { a->on_envelope(e); };
      hooks.room = [a](transport::Socket& s, const std::string& r, bool joined) {
        a->on_room(s, r, joined);
      };
      hooks.data = [a](transport::Socket& s) { a->on_data(s); };
      chat->set_admin_hooks(std::move(hooks));
      server->set_observer(admin_ui);
      admin_ui->start();
      spdlog::info("Admin UI at /admin/ (namespace /admin, {} mode{}, login {})", cfg.admin_ui_mode,
                   cfg.admin_ui_readonly ? ", read-only" : "", cfg.admin_ui_auth);
    }

    std::shared_ptr<endpoints::PublishApi> api;
    if (chat) {
      endpoints::PublishApiOptions ao;
      ao.keys = cfg.api_keys;
      ao.rate = cfg.api_rate;
      ao.burst = cfg.api_burst;
      ao.idempotency_keys = cfg.api_idempotency_keys;
      ao.replica = cfg.replica_id;
      auto* c = chat.get();
      api = std::make_shared<endpoints::PublishApi>(
          std::move(ao), [c](const app::ApiMessage& m) { return c->check_api_message(m); },
          [c](app::ApiMessage m, std::function<void(app::ApiOutcome)> done) {
            c->post_api_message(std::move(m), std::move(done));
          });
      server->set_async_http_handler(
          "/api/", [api](transport::HttpRequest req, transport::HttpRespond respond) {
            api->handle(std::move(req), std::move(respond));
          });
      if (!cfg.api_keys.empty())
        spdlog::info("publish API: {} key(s), {} messages/s per key", cfg.api_keys.size(),
                     cfg.api_rate);
    }

    std::atomic<bool> draining{false};
    auto surface = std::make_shared<endpoints::Endpoints>(
        load_static(cfg),
        [&] {
          endpoints::Readiness r;
          const auto b = bus->status();
          r.ready = !draining && (cfg.conformance || b.ready);
          r.details = {{"replica", cfg.replica_id},
                       {"instance", instance},
                       {"draining", draining.load()},
                       {"bus",
                        {{"kind", b.kind},
                         {"ready", b.ready},
                         {"publisher", b.publisher_up},
                         {"consumer", b.consumer_up},
                         {"outbox", b.outbox_depth},
                         {"lastError", b.last_error}}}};
          return r;
        },
        [&] {
          if (!chat)
            return server::render_metrics(cfg.replica_id, server->stats(), bus->status(), nullptr);
          const auto cs = chat->stats();
          std::string out =
              server::render_metrics(cfg.replica_id, server->stats(), bus->status(), &cs) +
              api->metrics();
          if (admin_ui) out += server::render_admin_metrics(cfg.replica_id, admin_ui->stats());
          return out;
        });
    server->set_http_handler(
        [surface](const transport::HttpRequest& req) { return surface->handle(req); });

    if (chat) chat->start();
    const auto admin_port =
        server->listen_admin(cfg.admin_host, cfg.admin_port,
                             [surface](const auto& req) { return surface->handle_admin(req); });
    spdlog::info("operations on http://{}:{} (/metrics, /readyz, /healthz)", cfg.admin_host,
                 admin_port);
    if (cfg.transport.memory_budget_bytes > 0)
      spdlog::info("memory budget {} MB", cfg.transport.memory_budget_bytes >> 20);
    const auto port = server->listen(cfg.host, cfg.port);
    workers.start();
    spdlog::info("listening on {}://{}:{} ({} threads, bus {}, transports {}{})",
                 cfg.transport.tls ? "https" : "http", cfg.host, port, threads,
                 cfg.amqp_url.empty() ? "in-process" : "amqp", cfg.transports,
                 cfg.conformance ? ", conformance mode" : "");

    // The main thread waits for a signal, then drains.
    boost::asio::io_context main_ctx;
    boost::asio::signal_set signals(main_ctx, SIGINT, SIGTERM);
    int got = 0;
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (!ec) got = sig;
    });
    main_ctx.run();

    spdlog::info("{}: draining (not ready, closing sessions)",
                 got == SIGINT ? "SIGINT" : "SIGTERM");
    draining = true;
    auto closed = std::make_shared<std::promise<void>>();
    auto closed_f = closed->get_future();
    server->shutdown([closed] { closed->set_value(); });
    if (closed_f.wait_for(std::chrono::milliseconds(cfg.drain_timeout_ms)) !=
        std::future_status::ready)
      spdlog::warn("drain timeout: some sessions did not close in {} ms", cfg.drain_timeout_ms);
    if (chat) {
      // Let the disconnect handlers publish "user left", then say goodbye.
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      chat->announce_departure();
      if (admin_ui) admin_ui->stop();
      chat->stop();
    }
    bus->stop();
    workers.stop();
    workers.join();
    spdlog::info("stopped");
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    std::cerr << "chat-server: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
