# ZooKeeper from the unchanged official image: the agent runs first as a prestart task in its
# own image, writes zoo.cfg and myid into the allocation's shared directory, and exits; then the
# stock zookeeper:3.9.3 task starts and reads them from there.
#
# Agent image: Dockerfile.alpine with an Alpine base of its own, e.g.
#   docker build -f Dockerfile.alpine --build-arg BASE=alpine:3.22.1 \
#       --build-arg SERVICE_USER=nobody -t registry.example.com/cluster-bootstrap/agent:0.1.0 .
#
# The group service is registered by Nomad before any task runs (prestart included), so the
# members see each other while their prestart tasks wait. A task-level service would only be
# registered after its task started: every prestart would wait for peers that never appear.

variable "agent_image" {
  type    = string
  default = "registry.example.com/cluster-bootstrap/agent:0.1.0"
}

job "zookeeper-prestart" {
  datacenters = ["dc1"]
  type        = "service"

  group "zookeeper" {
    count = 3

    constraint {
      operator = "distinct_hosts"
      value    = "true"
    }

    # Keep the alloc dir (zoo.cfg, myid, snapshots) when the allocation is replaced on this node.
    ephemeral_disk {
      sticky  = true
      migrate = true
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

    service {
      provider     = "consul"
      name         = "zookeeper"
      port         = "client"
      address_mode = "host"
    }

    task "cluster-bootstrap" {
      driver = "docker"
      # The shared alloc dir is not owned by the agent image's user; the zookeeper image's own
      # entrypoint hands the data dir to its zookeeper user before the server starts.
      user = "root"

      lifecycle {
        hook    = "prestart"
        sidecar = false
      }

      config {
        image      = var.agent_image
        entrypoint = ["/opt/cluster-bootstrap/bin/cluster-bootstrap"]
        args = [
          "render", "zookeeper", "--expect", "3",
          "--conf-dir", "${NOMAD_ALLOC_DIR}/conf", "--data-dir", "${NOMAD_ALLOC_DIR}/data",
        ]
      }

      # The image's own settings (ZOO_TICK_TIME, ZOO_MAX_CLIENT_CNXNS, ZOO_CFG_EXTRA, ...) belong
      # in this task's env, which the agent reads: the server reads the zoo.cfg rendered here,
      # so on the zookeeper task they would only reach a zoo.cfg nobody reads. ZOO_DATA_DIR and
      # ZOO_CONF_DIR say where the server looks; the agent image inherits /data and /conf from
      # the zookeeper image, and the agent refuses directories that disagree with them.
      env {
        CLUSTER_BOOTSTRAP_CLUSTER        = "zookeeper-prestart"
        CLUSTER_BOOTSTRAP_CONSUL_SERVICE = "zookeeper"
        CLUSTER_BOOTSTRAP_TIMEOUT        = "600"
        CONSUL_HTTP_ADDR                 = "${attr.unique.network.ip-address}:8500"
        ZOO_DATA_DIR                     = "${NOMAD_ALLOC_DIR}/data"
        ZOO_CONF_DIR                     = "${NOMAD_ALLOC_DIR}/conf"
      }

      resources {
        cpu    = 100
        memory = 128
      }
    }

    task "zookeeper" {
      driver = "docker"

      # The image's own entrypoint still runs (it hands the data dir to the zookeeper user and
      # drops root); only the config file is named: the one the prestart task rendered.
      config {
        image = "zookeeper:3.9.3"
        ports = ["client", "quorum", "election"]
        args  = ["zkServer.sh", "start-foreground", "${NOMAD_ALLOC_DIR}/conf/zoo.cfg"]
      }

      # Where the rendered zoo.cfg points dataDir (and where myid is): the entrypoint's chown and
      # its "write myid if absent" step look there, and find the agent's myid.
      env {
        ZOO_DATA_DIR = "${NOMAD_ALLOC_DIR}/data"
      }

      resources {
        cpu    = 500
        memory = 1024
      }
    }
  }
}
