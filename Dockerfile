# chat-server image: builds with the project's own scripts on Debian 12, then
# copies only the binary, the web page and the Socket.IO client bundle into a
# slim runtime image that runs as an unprivileged user.
#
#   docker build -t chat:1.0 .
#   docker run --rm -p 3000:3000 chat:1.0          # one replica, in-process bus
#   docker stack deploy -c docker-compose.yml chat # the cluster (docs/deploy.md)

# ---- build ------------------------------------------------------------------
FROM debian:12 AS build
WORKDIR /src

# Layers from the least to the most often changed, so that a change reuses
# what came before it: Debian packages (install-deps), npm packages
# (package.json), then only the sources the server is compiled from, so a
# change to docs, tests, scripts or the page does not recompile.
COPY scripts/install-deps scripts/install-deps
RUN scripts/install-deps --build --no-npm
COPY package.json package-lock.json ./
RUN scripts/install-deps --build

COPY CMakeLists.txt CMakePresets.json ./
COPY scripts/build scripts/build
COPY src src
COPY tools tools
# Only the server: no unit tests (CHAT_BUILD_TESTS=OFF), no load generator.
RUN cmake --preset release -DCHAT_BUILD_TESTS=OFF >/dev/null \
 && scripts/build release --target chat-server \
 && strip build/release/src/server/chat-server \
 && test -f node_modules/socket.io-client/dist/socket.io.min.js \
 && test -f node_modules/@socket.io/admin-ui/ui/dist/index.html \
 && find node_modules/@socket.io/admin-ui/ui/dist -name '*.map' -delete
COPY web web

# ---- runtime ----------------------------------------------------------------
FROM debian:12-slim

# The same script installs the shared libraries the binary links
# (librabbitmq4, libfmt9, libspdlog1.10, libsimdjson14, libssl3, libjwt0, zlib1g,
# libcrypt1, ca-certificates); curl
# runs the health check.
COPY --from=build /src/scripts/install-deps /tmp/chat/scripts/install-deps
RUN /tmp/chat/scripts/install-deps --runtime \
 && apt-get install -y -qq --no-install-recommends curl >/dev/null \
 && rm -rf /var/lib/apt/lists/* /tmp/chat \
 && groupadd --system --gid 10001 chat \
 && useradd --system --uid 10001 --gid chat --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin chat

WORKDIR /app
COPY --from=build /src/build/release/src/server/chat-server /usr/local/bin/chat-server
COPY --from=build /src/web /app/web
COPY --from=build /src/node_modules/socket.io-client/dist /app/node_modules/socket.io-client/dist
# The official Admin UI's page (served at /admin/ with --admin-ui / ADMIN_UI=true).
COPY --from=build /src/node_modules/@socket.io/admin-ui/ui/dist /app/node_modules/@socket.io/admin-ui/ui/dist

# Every setting is an environment variable (chat-server --help lists them);
# AMQP_URL stays empty here, which selects the in-process bus.
ENV HOST=0.0.0.0 \
    PORT=3000 \
    STATIC_ROOT=/app/web \
    CLIENT_DIST=/app/node_modules/socket.io-client/dist \
    ADMIN_UI_DIST=/app/node_modules/@socket.io/admin-ui/ui/dist \
    LOG_LEVEL=info

USER 10001:10001
EXPOSE 3000
# SIGTERM starts the graceful drain: not ready, stop accepting, disconnect
# every socket, tell the cluster, exit 0.
STOPSIGNAL SIGTERM
# Ready means listening, bus connected and not draining: a starting replica
# is not healthy until it can relay, which is what start-first updates wait for.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null "http://127.0.0.1:${PORT}/readyz" || exit 1

ENTRYPOINT ["/usr/local/bin/chat-server"]
