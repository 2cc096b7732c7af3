# Kafka 4.1 in KRaft combined mode: three nodes, each both broker and controller, that find each
# other through Consul.
#
# The image is built by Dockerfile.alpine from apache/kafka:4.1.0 (Alpine):
#   docker build -f Dockerfile.alpine -t registry.example.com/cluster-bootstrap/kafka:4.1.0 .
#
# Nomad sets NOMAD_IP_broker and NOMAD_HOST_PORT_<label> / NOMAD_PORT_<label> for the labelled
# ports below; the agent reads them. The labels must be exactly the Kafka adapter's: broker
# (primary) and controller.

variable "image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/kafka:4.1.0"
}

job "kafka" {
  datacenters = ["dc1"]
  type        = "service"

  group "kafka" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    network {
      port "broker" {
        to = 9092
      }
      port "controller" {
        to = 9093
      }
    }

    # Registered by Nomad before the task starts; port = the primary label (see zookeeper).
    service {
      provider     = "consul"
      name         = "kafka"
      port         = "broker"
      address_mode = "host"
    }

    task "kafka" {
      driver = "docker"

      config {
        image      = var.image
        ports      = ["broker", "controller"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "kafka", "--expect", "3", "--conf-dir", "/opt/kafka/config/cluster", "--",
          "/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/cluster/server.properties",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "kafka"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "kafka"
        CLUSTER_BOOTSTRAP_DATA_DIR       = "/var/lib/kafka/data"
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
