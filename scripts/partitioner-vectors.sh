#!/usr/bin/env bash
# Prints the murmur2 hash and the partition (of 3, 4 and 12) that Java's kafka-clients gives
# each key of scripts/PartitionerVectors.java, as rows of the table JAVA_MURMUR2 in
# crates/runtime/src/partitioner.rs. The class path is that of examples/java/pom.xml (its
# kafka-clients version), resolved by Maven (offline first); Java runs the source file.
#
#   scripts/partitioner-vectors.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cp=$(mktemp "${TMPDIR:-/tmp}/partitioner-cp.XXXXXX")
trap 'rm -f "$cp"' EXIT
pom=examples/java/pom.xml
mvn -q -B -o -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp" >/dev/null 2>&1 \
  || mvn -q -B -f "$pom" dependency:build-classpath -Dmdep.outputFile="$cp" >&2
java -cp "$(cat "$cp")" scripts/PartitionerVectors.java
