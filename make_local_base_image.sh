#!/usr/bin/env bash
# A local stand-in for the PyTorch base image, where Docker Hub cannot be reached: Debian
# bookworm (debootstrap, minbase) with its Python 3.11, pip and a CPU torch, imported as an image.
#   sudo ./make_local_base_image.sh [TAG]        (default localhost/autopet-local-base:bookworm-cpu)
# then: CONTAINER_ENGINE=podman ./do_build.sh --build-arg BASE_IMAGE=<TAG>
# TORCH_WHEEL: a torch wheel file to install (default: torch from PyPI's CPU index).
# The host's CA bundle is copied in, so pip works behind the same TLS proxy as the host.
# Needs root, debootstrap and the engine (podman: see the README's container section).
set -euo pipefail
TAG="${1:-localhost/autopet-local-base:bookworm-cpu}"
ENGINE="${CONTAINER_ENGINE:-podman}"
read -r -a engine_flags <<< "${ENGINE_FLAGS:-}"
ROOTFS="$(mktemp -d "${TMPDIR:-/var/tmp}/autopet-base.XXXXXX")"
trap 'rm -rf "$ROOTFS"' EXIT
chmod 755 "$ROOTFS"  # it becomes the image's /: mktemp's 0700 would lock out every non-root user

debootstrap --variant=minbase --include=python3,python3-pip,python-is-python3,ca-certificates \
    bookworm "$ROOTFS" http://deb.debian.org/debian
rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED  # an image's own Python, as in the PyTorch images
cp /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
cp /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' > "$ROOTFS/etc/pip.conf"
if [ -n "${TORCH_WHEEL:-}" ]; then
    mkdir -p "$ROOTFS/tmp/wheels" && cp "$TORCH_WHEEL" "$ROOTFS/tmp/wheels/"
    chroot "$ROOTFS" python -m pip install --no-cache-dir /tmp/wheels/"$(basename "$TORCH_WHEEL")"
    rm -rf "$ROOTFS/tmp/wheels"
else
    chroot "$ROOTFS" python -m pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu
fi
chroot "$ROOTFS" python -c "import torch; print('torch', torch.__version__)"
: > "$ROOTFS/etc/resolv.conf"
tar -C "$ROOTFS" -c . | "$ENGINE" "${engine_flags[@]}" import \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --change "ENV LANG=C.UTF-8" \
    - "$TAG"
echo "imported $TAG"
