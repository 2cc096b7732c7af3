#!/bin/sh
# Kafka in KRaft mode (apache/kafka image): find the peers through Consul, render
# server.properties into the conf dir (and format storage once), then exec the broker with it.
#
# Port labels the agent reads: broker (9092, primary), controller (9093), from Nomad's
# NOMAD_IP_broker and NOMAD_HOST_PORT_<label>, or from --address / --port LABEL=PORT.
# Settings come from CLUSTER_BOOTSTRAP_* (e.g. CLUSTER_BOOTSTRAP_EXPECT=3) and CONSUL_*;
# arguments to this script are passed to the agent before the "--". Choose the conf dir with
# CLUSTER_BOOTSTRAP_CONF_DIR, not --conf-dir: the broker is started with the file in that dir.
set -eu
agent=/opt/cluster-bootstrap/bin/cluster-bootstrap
[ -x "$agent" ] || agent=cluster-bootstrap
CLUSTER_BOOTSTRAP_CONF_DIR=${CLUSTER_BOOTSTRAP_CONF_DIR:-/opt/kafka/config/cluster}
export CLUSTER_BOOTSTRAP_CONF_DIR
exec "$agent" kafka "$@" -- \
    /opt/kafka/bin/kafka-server-start.sh "$CLUSTER_BOOTSTRAP_CONF_DIR/server.properties"
