#!/bin/sh
# ZooKeeper (official zookeeper image layout: /conf, /data): find the peers through Consul,
# render /conf/zoo.cfg and /data/myid, then exec the server in the foreground.
#
# Port labels the agent reads: client (2181, primary), quorum (2888), election (3888), from
# Nomad's NOMAD_IP_client and NOMAD_HOST_PORT_<label>, or from --address / --port LABEL=PORT.
# Settings come from CLUSTER_BOOTSTRAP_* (e.g. CLUSTER_BOOTSTRAP_EXPECT=3) and CONSUL_*;
# arguments to this script are passed to the agent before the "--".
set -eu
agent=/opt/cluster-bootstrap/bin/cluster-bootstrap
[ -x "$agent" ] || agent=cluster-bootstrap
# zkServer.sh finds zoo.cfg through ZOOCFGDIR, which the agent sets to the rendered file's dir.
exec "$agent" zookeeper "$@" -- zkServer.sh start-foreground
