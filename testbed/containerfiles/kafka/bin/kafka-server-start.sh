#!/bin/bash
# A stand-in for Kafka's bin/kafka-server-start.sh: the broker on the given server.properties.
exec "$(dirname "$0")/kafka-run-class.sh" kafka.Kafka "$@"
