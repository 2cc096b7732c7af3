#!/bin/sh
# The old way, as the baseline of start_to_exec: curl + jq + sed against the local Consul agent.
# Register this member, read the service's instances until EXPECT are there, fill zoo.cfg from
# a template with sed, append the server lines jq built, write myid, exec the server.
# Ids come from the registrations' meta (each member was given its id by hand).
# Environment: CONSUL_HTTP_ADDR SERVICE MY_ID MY_ADDRESS EXPECT DATA_DIR CONF_DIR TEMPLATE
set -eu
consul="http://${CONSUL_HTTP_ADDR}"

curl -sSf -o /dev/null -X PUT "$consul/v1/agent/service/register" --data-binary @- <<JSON
{"ID": "${SERVICE}-${MY_ID}", "Name": "${SERVICE}", "Address": "${MY_ADDRESS}", "Port": 2181,
 "Meta": {"cluster-bootstrap-id": "${MY_ID}"}}
JSON

while :; do
    servers=$(curl -sSf "$consul/v1/health/service/${SERVICE}" | jq -r '
        sort_by(.Service.Meta["cluster-bootstrap-id"] | tonumber) | .[] | .Service
        | "server.\(.Meta["cluster-bootstrap-id"])=\(.Address):2888:3888;\(.Address):2181"')
    [ "$(printf '%s\n' "$servers" | grep -c '^server\.')" -ge "$EXPECT" ] && break
    sleep 0.05
done

mkdir -p "$CONF_DIR" "$DATA_DIR"
sed -e "s|@DATA_DIR@|${DATA_DIR}|" "$TEMPLATE" > "$CONF_DIR/zoo.cfg"
printf '%s\n' "$servers" >> "$CONF_DIR/zoo.cfg"
printf '%s\n' "$MY_ID" > "$DATA_DIR/myid"
exec "$@"
