#!/bin/bash
# A stand-in for Kafka's bin/kafka-run-class.sh: java on /opt/kafka/libs with KAFKA_HEAP_OPTS,
# KAFKA_OPTS and a log4j2 configuration (KAFKA_LOG4J_CONFIG), exec'd so java takes this
# process's place.
set -euo pipefail
main=$1
shift
# shellcheck disable=SC2086 # the *_OPTS variables are lists of flags, split on purpose
exec java ${KAFKA_HEAP_OPTS:--Xmx1G} ${KAFKA_OPTS:-} \
  "-Dlog4j2.configurationFile=${KAFKA_LOG4J_CONFIG:-/opt/kafka/config/log4j2.properties}" \
  "-Dkafka.logs.dir=/opt/kafka/logs" -cp "/opt/kafka/libs/*" "$main" "$@"
