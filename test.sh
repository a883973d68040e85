#!/usr/bin/env bash
# Build the container and run it once on the bundled sample (test/input) under the limits
# Grand Challenge applies: no network, no capabilities, 2 GB shared memory, the GPU(s).
# MODEL_DIR: the trained nnU-Net folder mounted read-only at /opt/ml/model, where Grand Challenge
# puts the team's uploaded model (default: the phantom demo model models/task1_phantom; the image
# itself holds no model and, with AUTOPET_REQUIRE_MODEL=1, refuses to run Task 1 without one).
# GPUS= (empty) to test on a machine without a GPU.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"
INPUT_DIR="${INPUT_DIR:-$SCRIPT_DIR/test/input}"
GPUS="${GPUS-all}"

"$SCRIPT_DIR/build.sh"

OUTPUT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autopet-ct-iv-output.XXXXXX")"
chmod 777 "$OUTPUT_DIR"  # the container's non-root user writes here
trap 'rm -rf "$OUTPUT_DIR"' EXIT

MODEL_DIR="${MODEL_DIR-$SCRIPT_DIR/models/task1_phantom}"
model_mount=()
if [ -n "$MODEL_DIR" ]; then
    model_mount=(--volume "$(cd "$MODEL_DIR" && pwd):/opt/ml/model:ro")
fi
gpu_flag=()
if [ -n "$GPUS" ]; then
    gpu_flag=(--gpus "$GPUS")
fi

docker run --rm \
    --network none \
    --cap-drop ALL \
    --shm-size 2g \
    "${gpu_flag[@]}" \
    --volume "$INPUT_DIR:/input:ro" \
    --volume "$OUTPUT_DIR:/output" \
    "${model_mount[@]}" \
    "$DOCKER_IMAGE_TAG"

shopt -s nullglob
masks=("$OUTPUT_DIR"/images/tumor-lesion-segmentation/*.mha)
if [ "${#masks[@]}" -ne 1 ]; then
    echo "test failed: expected exactly one mask in images/tumor-lesion-segmentation, found ${#masks[@]}" >&2
    exit 1
fi
echo "test passed: wrote images/tumor-lesion-segmentation/$(basename "${masks[0]}")"
