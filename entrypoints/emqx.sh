#!/bin/sh
# EMQX 5 (emqx/emqx image; also 4.4 with --set version=4): find the peers through Consul, then
# exec the node with EMQX_NODE_NAME and EMQX_NODE__NAME (the image's entrypoint would otherwise
# name the node after the container's IP), the cookie and the static seeds in its environment.
#
# Port labels the agent reads: mqtt (1883, primary), dist (4370), rpc (5369), dashboard (18083),
# from Nomad's NOMAD_IP_mqtt and NOMAD_HOST_PORT_<label>, or from --address / --port LABEL=PORT.
# dist and rpc cannot be remapped: EMQX derives them from the node name (4370/5369 for "emqx@").
# Settings come from CLUSTER_BOOTSTRAP_* (e.g. CLUSTER_BOOTSTRAP_EXPECT=3) and CONSUL_*;
# arguments to this script are passed to the agent before the "--" (a later --set wins).
#
# output=env: the stock image's emqx.conf does not include a rendered file. The image's own
# entrypoint runs first, as without this script; it keeps the names the agent set.
set -eu
agent=/opt/cluster-bootstrap/bin/cluster-bootstrap
[ -x "$agent" ] || agent=cluster-bootstrap
exec "$agent" emqx --set output=env "$@" -- \
    /usr/bin/docker-entrypoint.sh /opt/emqx/bin/emqx foreground
