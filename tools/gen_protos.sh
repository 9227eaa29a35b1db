#!/usr/bin/env bash
# Regenerates fastckpt/proto/*_pb2.py from fastckpt/proto/*.proto.
#
# The generated code is committed, so neither users nor CI need protoc. It is
# produced by protoc 3.21.x (the compiler of the protobuf 4.21 series, bundled in
# grpcio-tools 1.51.3) on purpose: that gencode carries no runtime version check
# and runs on every protobuf Python runtime from 4.21 up (checked up to 7.x),
# whereas code from protoc >= 26 refuses runtimes older than itself.
#
# grpcio-tools is installed into a throwaway virtual environment (outside the
# repository) so the protobuf runtime of the main environment is never changed.
#
# Usage: tools/gen_protos.sh            (from anywhere; needs python3 and PyPI)
#        GEN_PROTOS_VENV=/path tools/gen_protos.sh   (reuse/choose the venv)
set -euo pipefail

GRPCIO_TOOLS_VERSION="1.51.3"   # bundles libprotoc 3.21.6
EXPECTED_PROTOC="libprotoc 3.21."

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${GEN_PROTOS_VENV:-${TMPDIR:-/tmp}/fastckpt-gen-protos-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import grpc_tools" 2>/dev/null; then
  "$venv/bin/pip" install --quiet "grpcio-tools==$GRPCIO_TOOLS_VERSION"
fi

protoc=("$venv/bin/python" -m grpc_tools.protoc)
version="$("${protoc[@]}" --version)"
case "$version" in
  "$EXPECTED_PROTOC"*) ;;
  *) echo "gen_protos.sh: expected $EXPECTED_PROTOC*, got '$version'" >&2; exit 1 ;;
esac

# Directory holding google/protobuf/*.proto (any.proto is imported).
wkt="$("$venv/bin/python" -c \
  'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"

cd "$root"
rm -f fastckpt/proto/*_pb2.py
"${protoc[@]}" -I. -I"$wkt" --python_out=. fastckpt/proto/*.proto
echo "generated with $version:"
ls fastckpt/proto/*_pb2.py
