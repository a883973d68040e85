#!/usr/bin/env bash
# Save the evaluation image as a .tar.gz to upload as the phase's evaluation method.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-evaluation}"
ENGINE="${CONTAINER_ENGINE:-docker}"   # podman works too (ENGINE_FLAGS, RUN_FLAGS, BUILD_ARGS as for ../../do_*.sh)
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"

read -r -a build_args <<< "${BUILD_ARGS:-}"
"$SCRIPT_DIR/do_build.sh" "${build_args[@]}"
"$ENGINE" "${engine_flags[@]}" save "$DOCKER_IMAGE_TAG" | gzip -c > "${DOCKER_IMAGE_TAG}.tar.gz"
echo "saved ${DOCKER_IMAGE_TAG}.tar.gz; upload it as the phase's evaluation method, with the ground-truth tarball"
