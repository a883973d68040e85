#!/usr/bin/env bash
# Build the container and run both tasks as Grand Challenge does (the platform's template name):
# no network, no capabilities, no new privileges, 2 GB shared memory, 16 GiB of memory (the
# platform's T4 instance), /input read-only, /tmp a fresh volume, the model read-only at
# /opt/ml/model, the GPU(s). Task 1 runs on the bundled sample (test/input), Task 2 on a phantom
# pair written by the repository's phantom generator, each with the inputs.json the platform
# writes (today's "socket" shape); each mask is compared with a plain run of inference.py on the
# host without inputs.json (the same masks are expected).
#   MODEL_DIR   model folder mounted at /opt/ml/model (default: the phantom demo model
#               models/task1_phantom_organs with its recipe; the image holds no model and refuses
#               Task 1 without one)
#   GPUS        "" on a machine without a GPU (default: all)
#   CONTAINER_ENGINE / ENGINE_FLAGS / RUN_FLAGS / BUILD_ARGS   e.g. podman, "--storage-driver vfs",
#               "--runtime runc", "--build-arg BASE_IMAGE=..." (see the README's container section)
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DOCKER_IMAGE_TAG="${DOCKER_IMAGE_TAG:-autopet-ct-iv-algorithm}"
ENGINE="${CONTAINER_ENGINE:-docker}"
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"
read -r -a run_flags <<< "${RUN_FLAGS:-}"
GPUS="${GPUS-all}"
PYTHON="${PYTHON:-$SCRIPT_DIR/.venv/bin/python}"
MODEL_DIR="${MODEL_DIR-$SCRIPT_DIR/models/task1_phantom_organs}"

read -r -a build_args <<< "${BUILD_ARGS:-}"
"$SCRIPT_DIR/do_build.sh" "${build_args[@]}"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/autopet-ct-iv-test-run.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m autopet_common.phantoms task2 --out "$WORK/task2" --n_pairs 1 --size tiny --seed 11 > /dev/null
TASK2_INPUT="$WORK/task2/PHANTOM_CT_0000/input"

model_mount=()
if [ -n "$MODEL_DIR" ]; then
    model_mount=(--volume "$(cd "$MODEL_DIR" && pwd):/opt/ml/model:ro")
fi
gpu_flag=()
if [ -n "$GPUS" ]; then
    gpu_flag=(--gpus "$GPUS")
fi

status=0
for task in 1 2; do
    plain_input="$SCRIPT_DIR/test/input"
    [ "$task" = 2 ] && plain_input="$TASK2_INPUT"
    # the container gets the job as the platform writes it: the inputs plus inputs.json (today's
    # "socket" shape); the plain run reads the folder without it, so equal masks also say that
    # the platform's inputs.json is read right
    input="$WORK/input_task$task"
    cp -r "$plain_input" "$input"
    chmod -R a+rX "$input"
    (cd "$SCRIPT_DIR" && "$PYTHON" -m autopet_common.socket_values "$input" > /dev/null)
    out="$WORK/container_task$task" plain="$WORK/plain_task$task"
    mkdir -p "$out" "$WORK/tmp_task$task"
    chmod 777 "$out" "$WORK/tmp_task$task"  # the container's non-root user writes here
    "$ENGINE" "${engine_flags[@]}" run --rm "${run_flags[@]}" \
        --platform=linux/amd64 \
        --network none \
        --cap-drop ALL \
        --security-opt no-new-privileges \
        --shm-size 2g \
        --memory 16g \
        "${gpu_flag[@]}" \
        --volume "$input:/input:ro" \
        --volume "$out:/output" \
        --volume "$WORK/tmp_task$task:/tmp" \
        "${model_mount[@]}" \
        "$DOCKER_IMAGE_TAG"
    model_arg=()
    if [ -n "$MODEL_DIR" ]; then model_arg=(--model "$MODEL_DIR"); fi
    (cd "$SCRIPT_DIR" && "$PYTHON" inference.py --input "$plain_input" --output "$plain" "${model_arg[@]}" --quiet)
    if "$PYTHON" - "$out" "$plain" <<'PY'
import sys
from pathlib import Path

import numpy as np

from autopet_common.image_io import read_image

container, plain = (sorted(Path(p).rglob("*.mha")) for p in sys.argv[1:3])
assert container and len(container) == len(plain), (container, plain)
for a, b in zip(container, plain):
    assert a.relative_to(sys.argv[1]) == b.relative_to(sys.argv[2]), (a, b)
    (x, gx), (y, gy) = read_image(a), read_image(b)
    assert np.array_equal(x, y) and gx == gy, f"{a} differs from the plain run's {b}"
print(f"same masks as the plain run: {', '.join(str(p.relative_to(sys.argv[1])) for p in container)}")
PY
    then echo "task $task: test passed"; else echo "task $task: test FAILED" >&2; status=1; fi
done
exit $status
