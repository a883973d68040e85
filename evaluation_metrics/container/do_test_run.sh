#!/usr/bin/env bash
# Run the evaluation image as Grand Challenge does, on a submission in the platform's layout:
#   do_test_run.sh LAYOUT_DIR
# LAYOUT_DIR holds input/ (predictions.json, <pk>/output/...) and ground_truth/, as written by
#   python -m local_challenge --make_phantoms 2 --phantom_size tiny --output run --platform_layout LAYOUT_DIR
# Inputs and ground truth are mounted read-only, no network, no capabilities; metrics.json is printed.
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-evaluation}"
ENGINE="${CONTAINER_ENGINE:-docker}"   # podman works too (ENGINE_FLAGS, RUN_FLAGS, BUILD_ARGS as for ../../do_*.sh)
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"
LAYOUT_DIR="$(cd "${1:?usage: do_test_run.sh LAYOUT_DIR (see the comment at the top)}" && pwd)"

read -r -a build_args <<< "${BUILD_ARGS:-}"
"$SCRIPT_DIR/do_build.sh" "${build_args[@]}"

OUTPUT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/autopet-ct-iv-evaluation.XXXXXX")"
chmod 777 "$OUTPUT_DIR"  # the container's non-root user writes here
trap 'rm -rf "$OUTPUT_DIR"' EXIT

read -r -a run_flags <<< "${RUN_FLAGS:-}"
"$ENGINE" "${engine_flags[@]}" run --rm "${run_flags[@]}" \
    --platform=linux/amd64 \
    --network none \
    --cap-drop ALL \
    --security-opt no-new-privileges \
    --volume "$LAYOUT_DIR/input:/input:ro" \
    --volume "$LAYOUT_DIR/ground_truth:/opt/ml/input/data/ground_truth:ro" \
    --volume "$OUTPUT_DIR:/output" \
    "$DOCKER_IMAGE_TAG"

cat "$OUTPUT_DIR/metrics.json"
