#!/bin/bash
# A stand-in for ZooKeeper's bin/zkServer.sh, "start-foreground" only: Maven Central has the
# jars but not the release's bin/ scripts. Like the real one it reads $ZOOCFGDIR/zoo.cfg (or
# the file given after start-foreground), SERVER_JVMFLAGS and ZK_SERVER_HEAP (MB), and execs
# java, so the JVM takes this process's place (PID 1 when the agent exec'd it).
set -euo pipefail
bindir=$(cd "$(dirname "$0")" && pwd)
ZOOCFGDIR=${ZOOCFGDIR:-$bindir/../conf}
if [ "${1:-}" != "start-foreground" ]; then
  echo "zkServer.sh: only start-foreground is supported in this test image" >&2
  exit 2
fi
zoocfg=${2:-$ZOOCFGDIR/zoo.cfg}
case "$zoocfg" in /*) ;; *) zoocfg=$ZOOCFGDIR/$zoocfg ;; esac
logback=$ZOOCFGDIR/logback.xml
[ -f "$logback" ] || logback=/conf/logback.xml
# shellcheck disable=SC2086 # SERVER_JVMFLAGS is a list of flags, split on purpose
exec java "-Xmx${ZK_SERVER_HEAP:-1000}m" ${SERVER_JVMFLAGS:-} \
  "-Dzookeeper.log.dir=${ZOO_LOG_DIR:-/logs}" "-Dlogback.configurationFile=$logback" \
  -cp "$bindir/../lib/*" org.apache.zookeeper.server.quorum.QuorumPeerMain "$zoocfg"
