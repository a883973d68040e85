#!/usr/bin/env bash
# Build the evaluation method's image (context: the repository root; the allowlist in
# Dockerfile.dockerignore sends only evaluation_metrics/ and autopet_common/). Extra arguments go
# to `docker build`, e.g. --build-arg BASE_IMAGE=<a local Python image> where Docker Hub is out of reach.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-evaluation}"
ENGINE="${CONTAINER_ENGINE:-docker}"   # podman works too (ENGINE_FLAGS, RUN_FLAGS, BUILD_ARGS as for ../../do_*.sh)
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"

"$ENGINE" "${engine_flags[@]}" build --platform=linux/amd64 --file "$SCRIPT_DIR/Dockerfile" --tag "$DOCKER_IMAGE_TAG" "$@" "$REPO"
echo "built $DOCKER_IMAGE_TAG"
