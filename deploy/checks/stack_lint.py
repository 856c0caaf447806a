#!/usr/bin/env python3
"""Lint the rendered Swarm stack (the output of `docker stack config`).

Reads the rendered YAML on stdin, checks the properties the deployment relies
on (docs/deploy.md), prints one line per problem on stderr and exits 1 if any.
With --lb-env it instead prints the load balancer's environment as KEY=VALUE
lines, so HAProxy can check deploy/haproxy.cfg with exactly what swarm sets.
"""
import re
import sys

import yaml

problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)
    return cond


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE form
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def duration_s(text):
    """Seconds in a compose duration such as 1m30s or 20s."""
    total = 0.0
    for num, unit in re.findall(r"([\d.]+)(ms|us|ns|h|m|s)", str(text or "")):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}[unit]
    return total


def published(svc):
    return [p for p in (svc.get("ports") or []) if isinstance(p, dict) and p.get("published")]


def health_cmd(svc):
    test = (svc.get("healthcheck") or {}).get("test") or []
    return " ".join(test) if isinstance(test, list) else str(test)


def main():
    stack = yaml.safe_load(sys.stdin)
    services = stack.get("services") or {}

    if "--lb-env" in sys.argv:
        for k, v in env_of(services.get("lb") or {}).items():
            print(f"{k}={v}")
        return 0

    for name in ("chat", "lb", "rabbitmq", "visualizer"):
        need(name in services, f"service {name} is missing")
    if problems:
        return report()
    chat, lb, mq, vis = (services[n] for n in ("chat", "lb", "rabbitmq", "visualizer"))

    # One overlay network that every service is on.
    nets = stack.get("networks") or {}
    need(len(nets) == 1, f"expected one network, found {sorted(nets)}")
    for nname, net in nets.items():
        need((net or {}).get("driver") == "overlay", f"network {nname} is not an overlay")
    for sname, svc in services.items():
        need(sorted(svc.get("networks") or {}) == sorted(nets),
             f"{sname} must be on exactly the stack network {sorted(nets)}")

    # chat: the image users build, 3 replicas, safe rolling updates.
    cdep = chat.get("deploy") or {}
    need(chat.get("image") == "chat:1.0", "chat.image must be chat:1.0 (docker build -t chat:1.0 .)")
    need(cdep.get("replicas") == 3, "chat must start with 3 replicas")
    upd = cdep.get("update_config") or {}
    need(upd.get("parallelism") == 1 and upd.get("order") == "start-first",
         "chat updates must be parallelism 1, order start-first")
    need((cdep.get("restart_policy") or {}).get("condition") in ("any", "on-failure"),
         "chat needs a restart policy")
    limits = (cdep.get("resources") or {}).get("limits") or {}
    need(limits.get("cpus") and limits.get("memory"), "chat needs CPU and memory limits")
    need("/readyz" in health_cmd(chat), "chat healthcheck must probe /readyz")
    need(not published(chat), "chat must not publish ports: traffic goes through lb")
    cenv = env_of(chat)
    need("{{.Task.Slot}}" in cenv.get("REPLICA_ID", ""), "REPLICA_ID must use the {{.Task.Slot}} template")
    need(cenv.get("PORT", "3000") == "3000", "chat must listen on 3000")
    drain = int(cenv.get("DRAIN_TIMEOUT", "10000")) / 1000
    need(duration_s(chat.get("stop_grace_period")) > drain,
         "chat stop_grace_period must exceed DRAIN_TIMEOUT, or swarm kills the drain")

    # The broker: one user shared with chat, not guest; its password only in
    # a swarm secret that the operator creates (never a constant here); not published.
    menv = env_of(mq)
    secrets = stack.get("secrets") or {}
    need(any((sec or {}).get("external") for sec in secrets.values()) and secrets,
         "the broker password must be an external swarm secret (docker secret create)")
    for sname, svc in (("chat", chat), ("rabbitmq", mq)):
        used = [x if isinstance(x, str) else x.get("source") for x in (svc.get("secrets") or [])]
        need(any(u in secrets and (secrets[u] or {}).get("external") for u in used),
             f"{sname} must get the broker password from the external secret")
        ep = " ".join(svc.get("entrypoint") or [])
        need("/run/secrets/" in ep, f"{sname} must read the password from /run/secrets at start")
        for k, v in env_of(svc).items():
            need(not re.search(r"PASS|SECRET", k) and not re.search(r"amqp://[^:/@]+:[^@]+@", v),
                 f"{sname}: {k} looks like a password in the stack file")
    cep = " ".join(chat.get("entrypoint") or [])
    need("exec /usr/local/bin/chat-server" in cep,
         "chat's entrypoint must exec chat-server (PID 1 gets SIGTERM)")
    m = re.search(r'AMQP_URL="amqp://[^"]*@([\w.-]+)(?::(\d+))?"', cep)
    need(m and m.group(1) == "rabbitmq" and int(m.group(2) or 5672) == 5672,
         "AMQP_URL must point at the rabbitmq service by name, port 5672")
    need(cenv.get("AMQP_USER") == menv.get("RABBITMQ_DEFAULT_USER"),
         "chat's AMQP_USER must match RABBITMQ_DEFAULT_USER")
    need(menv.get("RABBITMQ_DEFAULT_USER") not in (None, "", "guest"),
         "RabbitMQ user must be set and not guest (guest may only log in from localhost)")
    need("docker-entrypoint.sh" in " ".join(mq.get("entrypoint") or []) and mq.get("command"),
         "rabbitmq must still run the image's docker-entrypoint.sh with a command")
    need(mq.get("image", "").startswith("rabbitmq:3") and "management" in mq.get("image", ""),
         "rabbitmq must use a rabbitmq:3 management image")
    need("rabbitmq-diagnostics" in health_cmd(mq) and "ping" in health_cmd(mq),
         "rabbitmq healthcheck must be rabbitmq-diagnostics ping")
    vols = [v for v in (mq.get("volumes") or []) if isinstance(v, dict)]
    need(any(v.get("type") == "volume" and v.get("target") == "/var/lib/rabbitmq" for v in vols),
         "rabbitmq needs a named volume on /var/lib/rabbitmq")
    need(mq.get("hostname"), "rabbitmq needs a fixed hostname (its node name names the data dir)")
    for p in published(mq):
        need(p.get("target") != 5672, "AMQP port 5672 must not be published")
        need(p.get("target") != 15672 or p.get("mode") == "host",
             "the management UI may only be published in host mode")
    need("node.role == manager" in ((mq.get("deploy") or {}).get("placement") or {})
         .get("constraints", []), "rabbitmq must be pinned (its volume is node-local)")

    # lb: HAProxy with the shared config, on port 3000, enough server slots.
    need(str(lb.get("image", "")).startswith("haproxy:2.6"), "lb must use haproxy:2.6")
    cfgs = stack.get("configs") or {}
    targets = {c.get("target"): c.get("source") for c in (lb.get("configs") or [])}
    src = targets.get("/usr/local/etc/haproxy/haproxy.cfg")
    need(src in cfgs and str(cfgs[src].get("file", "")).endswith("deploy/haproxy.cfg"),
         "lb must mount deploy/haproxy.cfg as a config at /usr/local/etc/haproxy/haproxy.cfg")
    need(any(p.get("published") == 3000 and p.get("target") == 3000 for p in published(lb)),
         "lb must publish port 3000")
    need(health_cmd(lb), "lb needs a healthcheck")
    lenv = env_of(lb)
    slots = lenv.get("CHAT_SLOTS", "0")
    need(slots.isdigit() and int(slots) >= 10,
         "CHAT_SLOTS must leave room to scale chat well past 5 replicas")
    need(lenv.get("CHAT_DNS") == "tasks.chat", "lb must discover chat through tasks.chat")

    # visualizer: 8080, on a manager, reading the Docker socket.
    need(any(p.get("published") == 8080 for p in published(vis)), "visualizer must publish 8080")
    need("node.role == manager" in ((vis.get("deploy") or {}).get("placement") or {})
         .get("constraints", []), "visualizer must run on a manager")
    need(any(isinstance(v, dict) and v.get("source") == "/var/run/docker.sock"
             for v in (vis.get("volumes") or [])), "visualizer must mount /var/run/docker.sock")

    # No stack name baked in: nothing may refer to <stack>_<service>.
    text = yaml.safe_dump(stack)
    for sname in services:
        need(not re.search(rf"\w+_{sname}\b", text), f"a value refers to a stack-prefixed {sname}")
    return report()


def report():
    for p in problems:
        print(f"stack: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
