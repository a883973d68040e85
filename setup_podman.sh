#!/usr/bin/env bash
# Make this machine able to build and run the algorithm container without a Docker engine:
# podman + runc + debootstrap from Debian, vfs storage and the runc runtime (the steps of the
# README's container section). Needs root and Debian's apt. Safe to run again: what is there
# already is left as it is (an existing /etc/containers/*.conf is never overwritten).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
    echo "setup_podman.sh: needs root (apt-get install, /etc/containers)" >&2
    exit 2
fi
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup_podman.sh: installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap > /dev/null
fi
mkdir -p /etc/containers
# crun (podman's default) rejects the ulimits of a hybrid cgroup setup: use runc, no default ulimits.
if [ ! -f /etc/containers/containers.conf ]; then
    printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
fi
# No overlay support in every sandbox: vfs (slower, copies each layer) works everywhere.
if [ ! -f /etc/containers/storage.conf ]; then
    printf '[storage]\ndriver = "vfs"\nrunroot = "/run/containers/storage"\ngraphroot = "/var/lib/containers/storage"\n' \
        > /etc/containers/storage.conf
fi
podman --version
