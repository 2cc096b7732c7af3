# Kafka 4.1 in KRaft with separate roles: three controllers and two brokers, registered as two
# Consul services. Both groups share one cluster name, so node ids are claimed from one range
# (node.id must be unique across controllers and brokers) and the cluster id is one value.
#
# The "--set" options below (roles, controller_service) name the Kafka adapter's options
# for split roles; tests/unit/test_jobspecs.py builds the adapter with them, so a renamed option
# fails a test instead of a deployment.
#
# Both groups declare both labels: the agent advertises a port for every label of the adapter,
# and matches registrations to id claims by the primary label (broker), which the Consul
# service must use even on controller-only nodes.

variable "image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/kafka:4.1.0"
}

job "kafka-split" {
  datacenters = ["dc1"]
  type        = "service"

  group "controllers" {
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

    service {
      provider     = "consul"
      name         = "kafka-controllers"
      port         = "broker"
      address_mode = "host"
    }

    task "controller" {
      driver = "docker"

      config {
        image      = var.image
        ports      = ["broker", "controller"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "kafka", "--expect", "3", "--set", "roles=controller",
          "--conf-dir", "/opt/kafka/config/cluster", "--",
          "/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/cluster/server.properties",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "kafka-split"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "kafka-controllers"
        CLUSTER_BOOTSTRAP_DATA_DIR       = "/var/lib/kafka/data"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }

  group "brokers" {
    count = 2

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

    service {
      provider     = "consul"
      name         = "kafka-brokers"
      port         = "broker"
      address_mode = "host"
    }

    task "broker" {
      driver = "docker"

      config {
        image      = var.image
        ports      = ["broker", "controller"]
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "kafka", "--expect", "2", "--set", "roles=broker",
          "--set", "controller_service=kafka-controllers",
          "--conf-dir", "/opt/kafka/config/cluster", "--",
          "/opt/kafka/bin/kafka-server-start.sh", "/opt/kafka/config/cluster/server.properties",
        ]
      }

      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "kafka-split"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "kafka-brokers"
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
