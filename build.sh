#!/usr/bin/env bash
# Build the algorithm container. Extra arguments go to `docker build` (e.g. --no-cache).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"

docker build --platform=linux/amd64 --tag "$DOCKER_IMAGE_TAG" "$@" "$SCRIPT_DIR"
echo "built $DOCKER_IMAGE_TAG"
