#!/usr/bin/env bash
# Builds Tau's CPU serving image from the Dockerfile without a Docker engine or a registry, then smoke-tests it.
#
#   sudo scripts/build_image.sh [--rebuild-base]
#
# For a machine that reaches Debian's apt mirror and PyPI but no container registry (this project's dev
# machine), and has no Docker daemon. It:
#   1. installs podman, buildah, runc and debootstrap with apt-get if they are missing;
#   2. makes the base image locally: debootstrap a Debian bookworm minbase with python3 and python3-venv,
#      trim docs, locales and apt lists, and `podman import` it as localhost/tau-base:bookworm (once; kept
#      until --rebuild-base);
#   3. fetches every wheel the image needs on the host: `pip wheel '.[cpu]'` with the Dockerfile's pinned
#      onnxruntime and dumb-init, and setuptools for building the project inside the image;
#   4. builds the Dockerfile's default (cpu) target with buildah, the base swapped in by
#      `--build-arg PYTHON_IMAGE=` and the wheels by `--build-context wheelhouse=` (pip then installs offline);
#   5. runs scripts/image/smoke_test.py: the container under the Deployment's restrictions, gRPC health
#      SERVING, one inference, a /metrics scrape, SIGTERM and exit code 0, and a SIGTERM during start-up that
#      must stop it at once; prints image size and time to ready.
# It is a documented, manual check (docs/deployment.md), not part of the pytest suite: about a minute the
# first time (debootstrap), half that later. Needs root (debootstrap, and podman without user namespaces).
#
# Sandbox workarounds, all local to this script: containers.conf from scripts/image/ (runc, rlimits under the
# hard limits, no systemd); vfs storage under $WORK_DIR (no overlay mounts needed); buildah --isolation chroot;
# the smoke test runs with --network=host.
#
# Environment: WORK_DIR (default /var/tmp/tau-image: storage, base rootfs, wheels), IMAGE (default
# localhost/tau:local), PYTHON (default .venv/bin/python: needs grpcio and tritonclient, and must be the
# Python minor version of the base, 3.11, because it fetches the wheels), DEBIAN_MIRROR.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK_DIR="${WORK_DIR:-/var/tmp/tau-image}"
IMAGE="${IMAGE:-localhost/tau:local}"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_IMAGE="localhost/tau-base:bookworm"
BASE_PYTHON_MINOR="3.11"  # bookworm's python3
REBUILD_BASE=false

for argument in "$@"; do
    case "$argument" in
        --rebuild-base) REBUILD_BASE=true ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $argument (try --help)" >&2; exit 2 ;;
    esac
done

step() { printf '\n== %s\n' "$*"; }

if [[ $EUID -ne 0 ]]; then
    echo "build_image.sh needs root (debootstrap; podman with vfs storage and no user namespace)" >&2
    exit 1
fi

step "tools"
missing=()
for tool in podman buildah runc debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "installing ${missing[*]} with apt-get"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman buildah runc debootstrap
fi
podman --version
buildah --version

mkdir -p "$WORK_DIR"
export CONTAINERS_CONF="$REPO_ROOT/scripts/image/containers.conf"
export CONTAINERS_STORAGE_CONF="$WORK_DIR/storage.conf"
cat >"$CONTAINERS_STORAGE_CONF" <<EOF
# Written by scripts/build_image.sh: vfs needs no overlay or fuse support from the kernel.
[storage]
driver = "vfs"
graphroot = "$WORK_DIR/storage"
runroot = "$WORK_DIR/run"
EOF
echo "image store: $WORK_DIR/storage (use CONTAINERS_CONF=$CONTAINERS_CONF CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF podman ...)"

step "base image $BASE_IMAGE"
if $REBUILD_BASE || ! podman image exists "$BASE_IMAGE"; then
    rootfs="$WORK_DIR/rootfs"
    rm -rf "$rootfs"
    started=$SECONDS
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$rootfs" "$DEBIAN_MIRROR" >"$WORK_DIR/debootstrap.log"
    # What a slim image leaves out: package lists and caches, documentation, translations.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" -c . | podman import --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
    echo "debootstrapped and imported in $((SECONDS - started)) s"
else
    echo "exists (--rebuild-base to make it again)"
fi

step "wheels"
python_minor="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
if [[ "$python_minor" != "$BASE_PYTHON_MINOR" ]]; then
    echo "$PYTHON is Python $python_minor; the wheels must match the base's Python $BASE_PYTHON_MINOR" >&2
    exit 1
fi
wheelhouse="$WORK_DIR/wheelhouse"
rm -rf "$wheelhouse"
mkdir -p "$wheelhouse"
dockerfile_default() { sed -n "s/^ARG $1=//p" "$REPO_ROOT/Dockerfile"; }
started=$SECONDS
# What the cpu-build stage installs, at the Dockerfile's pinned versions; setuptools because pip builds the
# project from /src inside the image, in an isolated build environment.
"$PYTHON" -m pip wheel --quiet --wheel-dir "$wheelhouse" "${REPO_ROOT}[cpu]" \
    "onnxruntime==$(dockerfile_default ONNXRUNTIME_VERSION)" "dumb-init==$(dockerfile_default DUMB_INIT_VERSION)" \
    "setuptools>=69"
echo "$(find "$wheelhouse" -name '*.whl' | wc -l) wheels, $(du -sh "$wheelhouse" | cut -f1), in $((SECONDS - started)) s"

step "build $IMAGE"
started=$SECONDS
buildah build --isolation chroot --layers=false \
    --build-arg "PYTHON_IMAGE=$BASE_IMAGE" \
    --build-context "wheelhouse=$wheelhouse" \
    --file "$REPO_ROOT/Dockerfile" --tag "$IMAGE" "$REPO_ROOT"
build_seconds=$((SECONDS - started))
podman image prune --force >/dev/null

step "smoke test"
"$PYTHON" "$REPO_ROOT/scripts/image/smoke_test.py" --image "$IMAGE"
compressed_bytes="$(podman save "$IMAGE" 2>/dev/null | gzip -1 | wc -c)"
echo "image $IMAGE: built in ${build_seconds} s; $((compressed_bytes / 1000000)) MB as a gzip'd image archive"
