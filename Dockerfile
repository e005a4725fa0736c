# mcinr-bids: multi-contrast INR super-resolution as a BIDS App.
#
# CUDA image (default):  docker build -t mcinr-bids .
# CPU-only image:        docker build -t mcinr-bids:cpu --build-arg VARIANT=cpu \
#                            --build-arg BASE_IMAGE=debian:bookworm-slim .
# Run:  docker run --rm --gpus all -v /data/bids:/data:ro -v /data/out:/out \
#           -v /scratch:/work mcinr-bids /data /out participant -w /work
#
# BASE_IMAGE must provide Python 3.11 (Debian bookworm does) or have it installed below.
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${BASE_IMAGE}

ARG VARIANT=cuda
ARG FETCH_TEMPLATES=1
ARG VERSION=0.1.0
# for builds behind a proxy or from local wheels (e.g. PIP_FIND_LINKS=/opt/wheels mounted)
ARG PIP_CERT
ARG PIP_FIND_LINKS

LABEL org.opencontainers.image.title="mcinr-bids" \
      org.opencontainers.image.description="Isotropic super-resolution of anisotropic clinical MRI with one subject-specific multi-contrast implicit neural representation (BIDS App). Example: docker run --rm --gpus all -v /data/bids:/data:ro -v /data/derivatives/mcinr-bids:/out -v /scratch/work:/work mcinr-bids /data /out participant --participant-label 01 -w /work" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/mcinr-bids/mcinr-bids" \
      org.opencontainers.image.documentation="https://github.com/mcinr-bids/mcinr-bids#docker"

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    NIPYPE_NO_ET=1 \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    MCINR_CONTAINER=docker \
    MCINR_IMAGE=mcinr-bids:${VERSION} \
    MPLCONFIGDIR=/tmp/matplotlib \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:${PATH}

# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
       ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

COPY . /src/mcinr-bids
WORKDIR /src/mcinr-bids
RUN bash docker/install.sh "${VARIANT}"

# TemplateFlow templates at build time (nothing downloads at run time); readable by any user.
# FETCH_TEMPLATES=0 builds without them (e.g. no internet): the app then uses nilearn's
# MNI152NLin2009aSym and says so.
RUN mkdir -p "${TEMPLATEFLOW_HOME}" \
    && if [ "${FETCH_TEMPLATES}" = "1" ]; then \
         python -c "import templateflow.api as tf; tf.get('MNI152NLin2009cAsym', resolution=1, suffix='T1w', desc=None); tf.get('MNI152NLin2009cAsym', resolution=1, suffix='T2w', desc=None); tf.get('MNI152NLin2009cAsym', resolution=1, suffix='mask', desc='brain')"; \
       else \
         python -c "import templateflow.api"; \
       fi \
    && chmod -R a+rX "${TEMPLATEFLOW_HOME}" \
    && useradd --create-home --uid 1000 mcinr

USER 1000:1000
WORKDIR /home/mcinr
ENTRYPOINT ["mcinr-bids"]
