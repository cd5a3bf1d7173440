# The pinned Apache Kafka and where scripts/install.sh keeps its jars: a cache outside the clone,
# so later runs (and warm CI) reuse them. Sourced by scripts/install.sh and scripts/kafka.sh.
KAFKA_VERSION=4.1.1
KAFKA_HOME="${CARTSTREAM_KAFKA_HOME:-$HOME/.cache/cartstream/kafka-$KAFKA_VERSION}"
KAFKA_LIBS="$KAFKA_HOME/libs"
