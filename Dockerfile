# carbon-node container: the Carbon Footprint node on Cyclone DDS, CPU PyTorch, non-root.
#
#   docker build -t carbon-node .
#   docker run --rm --network host carbon-node            # DDS discovery needs multicast: host network
#   docker run --rm carbon-node demo                      # the whole loop inside the container
#
# Build arguments:
#   PYTHON_IMAGE     the base: the public slim Python image by default; any Debian-like image with python3
#                    (3.11+) and its venv module works (CI, which reaches no registry, builds on a local
#                    `docker import` of a debootstrap bookworm with python3 and python3-venv).
#   TORCH_INDEX_URL  where CPU torch comes from (the PyTorch CPU index by default).
#   PIP_NO_INDEX, PIP_FIND_LINKS  pip's own variables, for the build only: an offline build passes
#                    PIP_NO_INDEX=1 and PIP_FIND_LINKS=<URL of a wheelhouse> (tests/system/test_container.py).
#
# Optional upstream stack (Fast DDS + SustainML-Library, built from their public sources) so the node
# can run on the upstream sustainml_py bindings (--bus sustainml); adds ~20 min and ~1 GB. The libraries
# and the Python package go to /opt/sustainml (LD_LIBRARY_PATH, PYTHONPATH below); without the build
# argument that directory is empty and the node runs on Cyclone DDS:
#   docker build --build-arg UPSTREAM=1 -t carbon-node:upstream .
# UNVERIFIED: that stage has never been built by this project's CI (its sources are not reachable there).
# The pins are the combination known to build together by hand: Fast DDS v3.4.3, Fast-CDR v2.3.5,
# dev-utils v1.4.0 (cmake_utils, cpp_utils: needed by sustainml_cpp), SustainML-Library 338c66c. It needs
# a base with pip (the default image).
#
# Energy counters: RAPL (/sys/class/powercap) is root-only since Linux 5.10. Either run
# deploy/udev/99-carbon-node-powercap.rules on the host and pass the group with
# --group-add <gid of powercap>, or accept carbontracker's TDP-table estimate (doctor says which).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- optional: the upstream SustainML stack -------------------------------------------------
FROM ${PYTHON_IMAGE} AS upstream
ARG UPSTREAM=0
ARG FASTCDR_VERSION=v2.3.5
ARG FASTDDS_VERSION=v3.4.3
ARG DEVUTILS_VERSION=v1.4.0
ARG SUSTAINML_COMMIT=338c66c
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN if [ "$UPSTREAM" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends \
        git cmake g++ make python3-dev swig libasio-dev libtinyxml2-dev libssl-dev ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /opt/sustainml-src
# Build order: foonathan_memory, Fast-CDR, Fast DDS, dev-utils (cmake_utils, cpp_utils), then the Library.
# g++ 12 stops Fast DDS 3.4.3 on a false -Werror=maybe-uninitialized: keep that one a warning.
RUN if [ "$UPSTREAM" = "1" ]; then \
      git clone --depth 1 https://github.com/eProsima/foonathan_memory_vendor.git \
      && git clone --depth 1 --branch "$FASTCDR_VERSION" https://github.com/eProsima/Fast-CDR.git \
      && git clone --depth 1 --branch "$FASTDDS_VERSION" https://github.com/eProsima/Fast-DDS.git \
      && git clone --depth 1 --branch "$DEVUTILS_VERSION" https://github.com/eProsima/dev-utils.git \
      && git clone https://github.com/eProsima/SustainML-Library.git \
      && git -C SustainML-Library checkout "$SUSTAINML_COMMIT" \
      && git -C SustainML-Library submodule update --init --recursive \
      && for repo in foonathan_memory_vendor Fast-CDR Fast-DDS dev-utils/cmake_utils dev-utils/cpp_utils \
                     SustainML-Library/sustainml_cpp SustainML-Library/sustainml_swig; do \
           cmake -S "$repo" -B "build/$repo" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/sustainml \
             -DCMAKE_PREFIX_PATH=/opt/sustainml -DBUILD_TESTING=OFF -DCMAKE_CXX_FLAGS="-Wno-error=maybe-uninitialized" \
           && cmake --build "build/$repo" --parallel "$(nproc)" && cmake --install "build/$repo" || exit 1; \
         done \
      && pip install --no-cache-dir --prefix=/opt/sustainml SustainML-Library/sustainml_py; \
    else \
      mkdir -p /opt/sustainml; \
    fi

# ---- the node -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS node
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_NO_INDEX=0
ARG PIP_FIND_LINKS=""
# The node lives in the virtual environment /opt/carbon-node, as in the systemd install (README).
ENV PATH=/opt/carbon-node/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CARBON_NODE_STATE_DIR=/var/lib/carbon-node \
    CARBON_NODE_CACHE_DIR=/var/cache/carbon-node \
    HF_HOME=/var/cache/carbon-node/huggingface \
    CARBON_NODE_LOG_FORMAT=json \
    LD_LIBRARY_PATH=/opt/sustainml/lib \
    PYTHONPATH=/opt/sustainml/lib/python3.11/site-packages

# CPU PyTorch first, from its own index, so that the project's dependencies do not pull a CUDA build.
RUN python3 -m venv /opt/carbon-node \
    && pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"

WORKDIR /usr/src/carbon-node
COPY pyproject.toml README.md carbon_node.py ./
COPY carbon_node ./carbon_node
# hadolint ignore=DL3013
RUN pip install '.[measure]'

COPY --from=upstream /opt/sustainml /opt/sustainml

RUN groupadd --system --gid 10001 carbon-node \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/carbon-node --shell /usr/sbin/nologin carbon-node \
    && mkdir -p /var/lib/carbon-node /var/cache/carbon-node \
    && chown carbon-node:carbon-node /var/lib/carbon-node /var/cache/carbon-node
USER 10001:10001
VOLUME ["/var/lib/carbon-node", "/var/cache/carbon-node"]

# Liveness of the node itself: its bus thread refreshes a heartbeat file every 2 s; `carbon-node health`
# fails when it is older than 10 s (wedged, stopped) or missing (not running).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 CMD ["carbon-node", "health"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["carbon-node"]
# The node. A measure host of the pool is the same image with another command:
#   docker run --network host IMAGE serve-measurements --hardware-name "NVIDIA H100"
CMD ["run"]
