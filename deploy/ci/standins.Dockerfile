# CI-only stand-ins for the images docker-compose.yml names but the CI machine
# cannot pull (it reaches no image registry): built from Debian's packages on
# the local debian:12-slim and tagged with the same names, so the stack file
# deploys unchanged. Each keeps what the stack relies on from the official
# image: paths, ports, user, entrypoint, health-check tools.
#
#   docker build -f deploy/ci/standins.Dockerfile --target haproxy    -t haproxy:2.6 deploy/ci
#   docker build -f deploy/ci/standins.Dockerfile --target rabbitmq   -t rabbitmq:3-management deploy/ci
#   docker build -f deploy/ci/standins.Dockerfile --target visualizer -t dockersamples/visualizer deploy/ci
#
# Real deployments pull the official images; nothing here is shipped.

FROM debian:12-slim AS apt
RUN apt-get update -qq

# haproxy:2.6 -- Debian 12 ships HAProxy 2.6. Like the official image: config at
# /usr/local/etc/haproxy/haproxy.cfg, runs as user haproxy in the foreground in
# master-worker mode, SIGUSR1 stops it gracefully, bash for the stack's check.
FROM apt AS haproxy
RUN apt-get install -y -qq --no-install-recommends haproxy >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /usr/local/etc/haproxy /var/lib/haproxy
USER haproxy
STOPSIGNAL SIGUSR1
ENTRYPOINT ["haproxy", "-W", "-db"]
CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]

# dockersamples/visualizer -- the real one draws the swarm from the Docker API
# on the mounted socket. This one answers on 8080 with the API's task list
# (JSON), read through the same socket.
FROM apt AS visualizer
RUN apt-get install -y -qq --no-install-recommends socat curl >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY visualizer-standin /usr/local/bin/visualizer-standin
EXPOSE 8080
CMD ["socat", "TCP-LISTEN:8080,fork,reuseaddr", "EXEC:/usr/local/bin/visualizer-standin"]

# rabbitmq:3-management -- Debian 12 ships RabbitMQ 3.10 with the management
# plugin. Like the official image: data in /var/lib/rabbitmq (the volume),
# configuration in /etc/rabbitmq/conf.d, logs on the console, the default user
# from RABBITMQ_DEFAULT_USER/RABBITMQ_DEFAULT_PASS (read by the server itself),
# docker-entrypoint.sh drops to the rabbitmq user, rabbitmq-diagnostics on PATH.
FROM apt AS rabbitmq
RUN apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null \
 && rm -rf /var/lib/apt/lists/* \
 && rabbitmq-plugins enable --offline rabbitmq_management >/dev/null \
 && mkdir -p /etc/rabbitmq/conf.d \
 && chown -R rabbitmq:rabbitmq /var/lib/rabbitmq /etc/rabbitmq \
 && rm -f /var/lib/rabbitmq/.erlang.cookie \
 && ln -sf /var/lib/rabbitmq/.erlang.cookie /root/.erlang.cookie
COPY rabbitmq-10-defaults.conf /etc/rabbitmq/conf.d/10-defaults.conf
COPY rabbitmq-entrypoint /usr/local/bin/docker-entrypoint.sh
ENV HOME=/var/lib/rabbitmq \
    PATH=/usr/lib/rabbitmq/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME /var/lib/rabbitmq
EXPOSE 5672 15672
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["rabbitmq-server"]
