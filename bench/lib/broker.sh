# Private RabbitMQ node for the benchmarks (sourced by bench/run and tests/bench/smoke).
# Uses scripts/rabbitmq when the project has it, else starts rabbitmq-server
# directly with its own node name, ports and data directory.
#   broker_start DIR PORT   -> sets AMQP_URL
#   broker_stop DIR

broker_start() {
  local dir="$1" port="$2"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ -x scripts/rabbitmq ]; then
    scripts/rabbitmq start --port "$port" --mgmt-port $((port + 10000)) --dir "$dir" >"$dir/start.log" 2>&1 \
      || { cat "$dir/start.log" >&2; return 1; }
  else
    local bin=/usr/lib/rabbitmq/bin
    [ -x "$bin/rabbitmq-server" ] || bin=$(dirname "$(command -v rabbitmq-server)")
    : >"$dir/enabled_plugins.conf"
    printf '[].\n' >"$dir/enabled_plugins"
    export HOME_BEFORE_BROKER="$HOME"
    (
      export HOME="$dir" RABBITMQ_NODENAME="bench$port@localhost" RABBITMQ_NODE_PORT="$port" \
        RABBITMQ_DIST_PORT=$((port + 20000)) RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_PID_FILE="$dir/pid" RABBITMQ_CONFIG_FILE="$dir/none" \
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
      nohup "$bin/rabbitmq-server" >"$dir/server.log" 2>&1 &
      echo $! >"$dir/launcher.pid"
    )
    local i
    for i in $(seq 1 120); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
      sleep 0.5
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { tail -20 "$dir/server.log" >&2; return 1; }
    sleep 1
  fi
  export AMQP_URL="amqp://guest:guest@127.0.0.1:$port"
}

broker_stop() {
  local dir="$1"
  if [ -x scripts/rabbitmq ]; then
    scripts/rabbitmq stop --dir "$dir" >/dev/null 2>&1 || true
    return 0
  fi
  [ -f "$dir/pid" ] || [ -f "$dir/launcher.pid" ] || return 0
  local pid
  pid=$(cat "$dir/pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  pid=$(cat "$dir/launcher.pid" 2>/dev/null || true)
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  for _ in $(seq 1 40); do
    { [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; } || break
    sleep 0.25
  done
  rm -f "$dir/pid" "$dir/launcher.pid"
}
