#!/bin/bash
# The official image's entrypoint, reduced to what it does for an existing configuration:
# as root, own the directories and drop to the zookeeper user; write zoo.cfg and myid only
# when they are missing; then exec the command.
set -e
if [[ "$1" = 'zkServer.sh' && "$(id -u)" = '0' ]]; then
  chown -R zookeeper "$ZOO_DATA_DIR" "$ZOO_DATA_LOG_DIR" "$ZOO_LOG_DIR"
  exec gosu zookeeper "$0" "$@"
fi
CONFIG="$ZOO_CONF_DIR/zoo.cfg"
if [[ ! -f "$CONFIG" ]]; then
  {
    echo "dataDir=$ZOO_DATA_DIR"
    echo "dataLogDir=$ZOO_DATA_LOG_DIR"
    echo "tickTime=2000"
    echo "initLimit=5"
    echo "syncLimit=2"
    echo "standaloneEnabled=true"
    echo "server.1=localhost:2888:3888;2181"
  } >"$CONFIG"
fi
if [[ ! -f "$ZOO_DATA_DIR/myid" ]]; then
  echo "${ZOO_MY_ID:-1}" >"$ZOO_DATA_DIR/myid"
fi
exec "$@"
