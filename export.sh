#!/usr/bin/env bash
# Build the container and save it as a gzipped tarball for upload to Grand Challenge.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"
OUTPUT_FILE="${OUTPUT_FILE:-$SCRIPT_DIR/${DOCKER_IMAGE_TAG}.tar.gz}"

"$SCRIPT_DIR/build.sh"
echo "saving $DOCKER_IMAGE_TAG to $OUTPUT_FILE (this takes a few minutes)"
docker save "$DOCKER_IMAGE_TAG" | gzip -c > "$OUTPUT_FILE.tmp"
mv "$OUTPUT_FILE.tmp" "$OUTPUT_FILE"
echo "wrote $OUTPUT_FILE"
