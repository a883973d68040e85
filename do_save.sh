#!/usr/bin/env bash
# Build the container and save it as a gzipped tarball for upload to Grand Challenge (the
# platform's template name). The model goes up separately, as a tarball of the model folder:
# check it first with python -m Task1.check_model DIR --tar model.tar.gz.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"
OUTPUT_FILE="${OUTPUT_FILE:-$SCRIPT_DIR/${DOCKER_IMAGE_TAG}.tar.gz}"
ENGINE="${CONTAINER_ENGINE:-docker}"
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"

"$SCRIPT_DIR/do_build.sh"
echo "saving $DOCKER_IMAGE_TAG to $OUTPUT_FILE (this takes a few minutes)"
"$ENGINE" "${engine_flags[@]}" save "$DOCKER_IMAGE_TAG" | gzip -c > "$OUTPUT_FILE.tmp"
mv "$OUTPUT_FILE.tmp" "$OUTPUT_FILE"
echo "wrote $OUTPUT_FILE"
