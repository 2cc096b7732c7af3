# EMQX 5.8: three nodes that find each other through Consul (static seeds rendered by the agent,
# handed to EMQX as EMQX_* environment; the stock emqx.conf needs no change).
#
# The image is emqx/emqx:5.8.6 with cluster-bootstrap added at /opt/cluster-bootstrap. The
# official image is Debian-based (glibc), so Dockerfile.alpine cannot build it.
#
# EMQX derives a peer's Erlang distribution and RPC ports from its node name (4370 and 5369 for
# "emqx@<host>"): those two cannot be dynamic host ports. They are static here, the same on every
# node, which allows one EMQX per host (distinct_hosts). The labels must be exactly the EMQX
# adapter's: mqtt (primary), dist, rpc, dashboard.

variable "image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/emqx:5.8.6"
}

job "emqx" {
  datacenters = ["dc1"]
  type        = "service"

  group "emqx" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "mqtt" {
        to = 1883
      }
      port "dist" {
        static = 4370
        to     = 4370
      }
      port "rpc" {
        static = 5369
        to     = 5369
      }
      port "dashboard" {
        to = 18083
      }
    }

    # Registered by Nomad before the task starts; port = the primary label (see zookeeper).
    # The check only turns green once the node runs: discovery counts members in any state.
    service {
      provider     = "consul"
      name         = "emqx"
      port         = "mqtt"
      address_mode = "host"

      check {
        type     = "http"
        port     = "dashboard"
        path     = "/status"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "emqx" {
      driver = "docker"

      config {
        image      = var.image
        ports      = ["mqtt", "dist", "rpc", "dashboard"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "emqx", "--expect", "3", "--set", "output=env", "--",
          "/usr/bin/docker-entrypoint.sh", "/opt/emqx/bin/emqx", "foreground",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "emqx"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "emqx"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 1000
        memory = 2048
      }
    }
  }
}
