#!/usr/bin/env bash
# Build the chest X-ray example images. Without BASE_IMAGE, the base (Debian bookworm with python3,
# numpy, Pillow, PyYAML) is built offline from Debian packages when missing: mmdebstrap + docker import.
#   BASE_IMAGE=<image>   use this base instead (must be present locally; a Python 3.11 image with those packages)
#   PYTHON=<python>      interpreter with the docker SDK and PyYAML (default: the project's .venv)
# `build.sh base` only makes sure the base image exists.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3
default_base=${MEDPERF_BASE_TAG:-medperf-apply/python-base:bookworm}

build_base() {
  local tag=$1 tmp
  command -v mmdebstrap >/dev/null || { echo "build.sh: mmdebstrap is needed to build $tag offline (apt-get install mmdebstrap), or set BASE_IMAGE" >&2; exit 1; }
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  echo "build.sh: building $tag with mmdebstrap (Debian bookworm, python3 numpy Pillow PyYAML)" >&2
  local started=$SECONDS
  mmdebstrap --quiet --variant=essential --include=python3-minimal,python3-numpy,python3-pil,python3-yaml \
    bookworm "$tmp/root.tar"
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    "$tmp/root.tar" "$tag" >/dev/null
  echo "build.sh: $tag built in $((SECONDS - started)) s" >&2
}

if [ -n "${BASE_IMAGE:-}" ]; then
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || { echo "build.sh: BASE_IMAGE $BASE_IMAGE is not present locally" >&2; exit 1; }
else
  BASE_IMAGE=$default_base
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || build_base "$BASE_IMAGE"
fi
[ "${1:-}" = base ] && { echo "build.sh: base image $BASE_IMAGE $(docker image inspect -f '{{.Id}}' "$BASE_IMAGE")"; exit 0; }
exec "$py" "$here/build.py" --base-image "$BASE_IMAGE"
