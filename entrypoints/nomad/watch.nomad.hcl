# The watch loop alone, as a sidecar next to an image that cannot be changed (NATS 2.10 here,
# through the generic template adapter). Two agent tasks share the allocation directory:
#
# - "render" (prestart, runs once): forms the cluster and writes nats.conf, so the server task
#   starts with a complete route list;
# - "watch" (prestart sidecar, runs beside the server): the same start, then the watch loop. On
#   every change in Consul it re-renders, under the cluster lock and after the quiet period,
#   and rewrites nats.conf atomically if its bytes changed.
#
# The sidecar cannot signal the server task: that would need Nomad's task API from inside the
# allocation, which this project does not use. The new file takes effect at the server's next
# start (README, "Supervise mode"); use supervise.nomad.hcl where the image can carry the agent.

variable "agent_image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/agent:0.1.0"
}

job "nats-watched" {
  datacenters = ["dc1"]
  type        = "service"

  group "nats" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # The cluster (route) port: the template adapter's only label. Clients reach NATS through
    # Nomad's bridge or host networking on 4222, which no member needs to advertise.
    network {
      port "service" {
        static = 6222
        to     = 6222
      }
    }

    service {
      provider     = "consul"
      name         = "nats"
      port         = "service"
      address_mode = "host"
    }

    task "render" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image      = var.agent_image
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "render", "template", "--expect", "3",
          "--conf-dir", "${NOMAD_ALLOC_DIR}/conf", "--data-dir", "${NOMAD_ALLOC_DIR}/data",
          "--set", "files=[{path: '${NOMAD_ALLOC_DIR}/conf/nats.conf', content: 'cluster { name: nats, listen: 0.0.0.0:6222, routes: [{% for m in members %}nats-route://{{ m.address }}:{{ m.ports.service }} {% endfor %}] }'}]",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "nats"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "nats"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }

    task "watch" {
      driver = "docker"

      lifecycle {
        hook    = "prestart"
        sidecar = true
      }

      config {
        image      = var.agent_image
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "watch", "template", "--expect", "3", "--change-wait", "5s:30s",
          "--conf-dir", "${NOMAD_ALLOC_DIR}/conf", "--data-dir", "${NOMAD_ALLOC_DIR}/data",
          "--set", "files=[{path: '${NOMAD_ALLOC_DIR}/conf/nats.conf', content: 'cluster { name: nats, listen: 0.0.0.0:6222, routes: [{% for m in members %}nats-route://{{ m.address }}:{{ m.ports.service }} {% endfor %}] }'}]",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "nats"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "nats"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 50
        memory = 64
      }
    }

    task "nats" {
      driver = "docker"

      config {
        image = "nats:2.10.22-alpine"
        ports = ["service"]
        args  = ["--config", "${NOMAD_ALLOC_DIR}/conf/nats.conf"]
      }

      resources {
        cpu    = 500
        memory = 256
      }
    }
  }
}
