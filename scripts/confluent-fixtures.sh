#!/usr/bin/env bash
# Regenerates crates/proto/tests/fixtures/confluent/python-*.bin: the frames Confluent's
# own Python serializers (confluent-kafka's ProtobufSerializer and JSONSerializer, against
# the client's in-process mock registry) write for the golden event. The Rust test
# crates/proto/tests/confluent.rs checks that they are the frames our decoder reads.
# Needs Python 3 and PyPI; versions are pinned in scripts/confluent/requirements.txt.
# Not part of the test command: the fixtures are committed.
#
#   scripts/confluent-fixtures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${CONFLUENT_VENV:-target/confluent-venv}
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/confluent/requirements.txt
"$venv/bin/python" scripts/confluent/generate_fixtures.py
