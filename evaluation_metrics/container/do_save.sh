#!/usr/bin/env bash
# Save the evaluation image as a .tar.gz to upload as the phase's evaluation method.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-evaluation}"

"$SCRIPT_DIR/do_build.sh"
docker save "$DOCKER_IMAGE_TAG" | gzip -c > "${DOCKER_IMAGE_TAG}.tar.gz"
echo "saved ${DOCKER_IMAGE_TAG}.tar.gz; upload it as the phase's evaluation method, with the ground-truth tarball"
