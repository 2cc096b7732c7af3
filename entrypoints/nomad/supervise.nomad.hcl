# ZooKeeper 3.9 with the agent in supervise mode: the agent is the task's entrypoint and stays
# as PID 1 with ZooKeeper as its child. It forwards Nomad's stop signal, reaps zombies, exits
# with ZooKeeper's exit code, and watches the cluster's records in Consul (one log line per
# change). Same image as zookeeper.nomad.hcl.
#
# The agent never restarts ZooKeeper itself: when ZooKeeper exits, the agent exits with its code
# and the restart block below decides, with Nomad's back-off (README, "Supervise mode").

variable "image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/zookeeper:3.9.3"
}

job "zookeeper-supervised" {
  datacenters = ["dc1"]
  type        = "service"

  group "zookeeper" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    restart {
      attempts = 3
      interval = "5m"
      delay    = "15s"
      mode     = "delay"
    }

    network {
      port "client" {
        static = 2181
        to     = 2181
      }
      port "quorum" {
        static = 2888
        to     = 2888
      }
      port "election" {
        static = 3888
        to     = 3888
      }
    }

    service {
      provider     = "consul"
      name         = "zookeeper"
      port         = "client"
      address_mode = "host"

      check {
        type     = "tcp"
        port     = "client"
        interval = "10s"
        timeout  = "2s"
      }
    }

    task "zookeeper" {
      driver = "docker"

      # Longer than --kill-timeout: the agent's own SIGKILL step and its clean-up (lock,
      # deregistration, bounded to 5 s) happen before Nomad's.
      kill_timeout = "45s"
      kill_signal  = "SIGTERM"

      config {
        image      = var.image
        ports      = ["client", "quorum", "election"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "zookeeper", "--expect", "3", "--supervise", "--kill-timeout", "30",
          "--", "zkServer.sh", "start-foreground",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "zookeeper-supervised"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "zookeeper"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
