# ZooKeeper 3.9: three members that find each other through Consul.
#
# The image is zookeeper:3.9.3 with cluster-bootstrap added at /opt/cluster-bootstrap. The
# official image is Ubuntu-based (glibc), so Dockerfile.alpine cannot build it; to run the stock
# image unchanged, use prestart.nomad.hcl instead.
#
# Nomad sets NOMAD_IP_client and NOMAD_HOST_PORT_<label> / NOMAD_PORT_<label> for the labelled
# ports below; the agent reads them, so they are not repeated here. The labels must be exactly
# the ZooKeeper adapter's: client (primary), quorum, election.

variable "image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/zookeeper:3.9.3"
}

job "zookeeper" {
  datacenters = ["dc1"]
  type        = "service"

  group "zookeeper" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # ZooKeeper binds the ports its own server line advertises, so each port is the same number
    # on the host and in the container (static); distinct_hosts keeps members apart.
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

    # A group service: Nomad registers it before any task starts, so every member is visible
    # to its peers while their agents wait. Its port must be the primary label: the agent
    # matches registrations to id claims by host address and that port.
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

      config {
        image      = var.image
        ports      = ["client", "quorum", "election"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args       = ["zookeeper", "--expect", "3", "--", "zkServer.sh", "start-foreground"]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "zookeeper"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "zookeeper"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        # The Consul agent on this host; its client_addr must include this address. A token,
        # if ACLs are on, belongs in a template from Vault or Nomad variables, not here.
        CONSUL_HTTP_ADDR = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
