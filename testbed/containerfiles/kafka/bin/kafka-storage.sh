#!/bin/bash
# A stand-in for Kafka's bin/kafka-storage.sh (format, info, random-uuid), warnings to stderr.
KAFKA_LOG4J_CONFIG=/opt/kafka/config/tools-log4j2.properties \
  exec "$(dirname "$0")/kafka-run-class.sh" kafka.tools.StorageTool "$@"
