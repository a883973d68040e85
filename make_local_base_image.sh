#!/usr/bin/env bash
# A local stand-in for the PyTorch base image, where Docker Hub cannot be reached: Debian
# bookworm (debootstrap, minbase) with its Python 3.11, pip and torch, imported as an image.
# Every byte comes from Debian's mirror or from PyPI (through the host's pip and its settings).
#   sudo ./make_local_base_image.sh [TAG]        (default localhost/autopet-local-base:bookworm-cpu)
# then: CONTAINER_ENGINE=podman ./do_build.sh --build-arg BASE_IMAGE=<TAG>
# torch: the version pinned in constraints.txt, as the wheel the host's pip picks for the image's
# Python 3.11 (pip download; where the host keeps a CPU build of that version on disk, that one,
# else PyPI's). TORCH_WHEEL: a wheel file to install instead. The wheel's own dependencies come
# from PyPI inside the image; the host's CA bundle is copied in, so pip works behind the same TLS
# proxy as the host. Needs root, debootstrap and the engine (./setup_podman.sh).
set -euo pipefail
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TAG="${1:-localhost/autopet-local-base:bookworm-cpu}"
ENGINE="${CONTAINER_ENGINE:-podman}"
HOST_PYTHON="${PYTHON:-python3}"
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"
ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/autopet-base.XXXXXX")"
WHEELS="$(mktemp -d "${TMPDIR:-/var/tmp}/autopet-wheels.XXXXXX")"
trap 'rm -rf "$ROOTFS" "$WHEELS"' EXIT
chmod 755 "$ROOTFS"  # it becomes the image's /: mktemp's 0700 would lock out every non-root user

if [ -z "${TORCH_WHEEL:-}" ]; then
    torch_pin="$(grep -E '^torch==' "$SCRIPT_DIR/constraints.txt" | head -1 | cut -d' ' -f1)"
    [ -n "$torch_pin" ] || { echo "make_local_base_image.sh: no torch==X pin in constraints.txt" >&2; exit 2; }
    # the image's Python is Debian bookworm's 3.11 on linux/amd64 (the platform's architecture)
    "$HOST_PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
        --platform manylinux_2_28_x86_64 --dest "$WHEELS" "$torch_pin"
    TORCH_WHEEL="$(ls "$WHEELS"/torch-*.whl)"
fi
echo "torch wheel: $(basename "$TORCH_WHEEL")"

debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED  # an image's own Python, as in the PyTorch images
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$ROOTFS/etc/pip.conf"
mkdir -p "$ROOTFS/tmp/wheels" && cp "$TORCH_WHEEL" "$ROOTFS/tmp/wheels/"
chroot "$ROOTFS" python -m pip install --quiet --no-cache-dir /tmp/wheels/"$(basename "$TORCH_WHEEL")"
rm -rf "$ROOTFS/tmp/wheels"
chroot "$ROOTFS" python -c "import torch; print('torch', torch.__version__)"
: > "$ROOTFS/etc/resolv.conf"
tar -C "$ROOTFS" -c . | "$ENGINE" "${engine_flags[@]}" import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --change "ENV LANG=C.UTF-8" \
    - "$TAG"
echo "imported $TAG"
