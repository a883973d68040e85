#!/usr/bin/env bash
# Build the algorithm container (the platform's template name). Extra arguments go to the
# engine's build, e.g. --build-arg BASE_IMAGE=<a local image with Python and torch> where Docker
# Hub is out of reach. CONTAINER_ENGINE=podman uses podman (ENGINE_FLAGS: e.g.
# "--storage-driver vfs" on machines without overlay support).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"
ENGINE="${CONTAINER_ENGINE:-docker}"
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"

"$ENGINE" "${engine_flags[@]}" build --platform=linux/amd64 --tag "$DOCKER_IMAGE_TAG" "$@" "$SCRIPT_DIR"
echo "built $DOCKER_IMAGE_TAG"
