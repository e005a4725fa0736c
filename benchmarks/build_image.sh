#!/usr/bin/env bash
# Build the CPU variant of the mcinr-bids image without a Docker daemon or a registry, then run
# `mcinr-bids --version` and a --sloppy participant run inside it.
#
# A Debian bookworm base is made with debootstrap and imported into podman; the Dockerfile is
# built with `podman build --isolation=chroot --network=host` (its RUN steps reach the package
# registries through the host network; the host's CA bundle is mounted for pip); commands run in
# the result with `buildah run --isolation chroot` (`podman run` does not work on this machine).
# TemplateFlow's servers are not reachable here, so the image is built with FETCH_TEMPLATES=0
# and the app falls back to nilearn's MNI152NLin2009aSym (named as such).
#
#   bash benchmarks/build_image.sh [LOG]      (run as root; about 10-20 minutes)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
log="${1:-$here/benchmarks/output/build_image.log}"
mkdir -p "$(dirname "$log")"
exec > >(tee "$log") 2>&1
work="${MCINR_BUILD_DIR:-/tmp/mcinr-image-build}"
mkdir -p "$work"
started=$(date +%s)

if ! podman image exists localhost/debian-bookworm-base; then
    echo "== debootstrap bookworm (minbase)"
    rm -rf "$work/rootfs"
    debootstrap --variant=minbase bookworm "$work/rootfs" http://deb.debian.org/debian
    tar -C "$work/rootfs" -c . | podman import - localhost/debian-bookworm-base
fi

echo "== podman build (CPU variant)"
volumes=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/host-ca.crt:ro)
build_env=(--build-arg VARIANT=cpu --build-arg FETCH_TEMPLATES=0
           --build-arg BASE_IMAGE=localhost/debian-bookworm-base)
if [ -d /opt/wheels ]; then  # the local CPU torch wheel, so that nothing large downloads
    volumes+=(--volume /opt/wheels:/opt/wheels:ro)
fi
podman build --isolation=chroot --network=host "${volumes[@]}" "${build_env[@]}" \
    --build-arg PIP_CERT=/etc/ssl/certs/host-ca.crt --build-arg PIP_FIND_LINKS=/opt/wheels \
    -t localhost/mcinr-bids:cpu "$here"
echo "== image size: $(podman image inspect localhost/mcinr-bids:cpu --format '{{.Size}}') bytes"

echo "== mcinr-bids --version inside the image"
container=$(buildah from localhost/mcinr-bids:cpu)
trap 'buildah rm "$container" > /dev/null' EXIT
buildah run --isolation chroot "$container" -- mcinr-bids --version

echo "== --sloppy participant run inside the image"
buildah run --isolation chroot "$container" -- python - <<'PY'
import subprocess, sys
from mcinr_bids.quality.phantom import write_bids_phantom
write_bids_phantom("/tmp/bids", subjects=(("01", None, False),), resolution=3.0)
code = subprocess.run(["mcinr-bids", "/tmp/bids", "/tmp/out", "participant", "-w", "/tmp/work",
                       "--sloppy", "--nprocs", "2", "--output-resolution", "3"]).returncode
import glob, json
outputs = sorted(glob.glob("/tmp/out/sub-01/anat/*"))
print("\n".join(outputs))
description = json.load(open("/tmp/out/dataset_description.json"))
print("GeneratedBy:", description["GeneratedBy"])
sys.exit(code or (0 if any(p.endswith("desc-superres_FLAIR.nii.gz") for p in outputs) else 1))
PY
echo "== done in $(( $(date +%s) - started )) s"
