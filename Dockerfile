# carbon-node container: the Carbon Footprint node on Cyclone DDS, CPU PyTorch, non-root.
#
#   docker build -t carbon-node .
#   docker run --rm --network host carbon-node            # DDS discovery needs multicast: host network
#   docker run --rm carbon-node demo                      # the whole loop inside the container
#
# Optional upstream stack (Fast DDS 3.4 + SustainML-Library, built from their public sources) so the
# node can run on the upstream sustainml_py bindings (--bus sustainml); adds ~20 min and ~1 GB. The
# libraries and the Python package go to /opt/sustainml (LD_LIBRARY_PATH, PYTHONPATH below); without
# the build argument that directory is empty and the node runs on Cyclone DDS:
#   docker build --build-arg UPSTREAM=1 -t carbon-node:upstream .
#
# Energy counters: RAPL (/sys/class/powercap) is root-only since Linux 5.10. Either run
# deploy/udev/99-carbon-node-powercap.rules on the host and pass the group with
# --group-add <gid of powercap>, or accept carbontracker's TDP-table estimate (doctor says which).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- optional: the upstream SustainML stack -------------------------------------------------
FROM ${PYTHON_IMAGE} AS upstream
ARG UPSTREAM=0
ARG FASTDDS_BRANCH=3.4.x
ARG SUSTAINML_REF=main
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN if [ "$UPSTREAM" = "1" ]; then \
      apt-get update && apt-get install -y --no-install-recommends \
        git cmake g++ make python3-dev swig libasio-dev libtinyxml2-dev libssl-dev ca-certificates \
      && rm -rf /var/lib/apt/lists/*; \
    fi
WORKDIR /opt/sustainml-src
# Build order of the upstream repos file: foonathan_memory, Fast-CDR, Fast-DDS (3.4.x), then the Library.
RUN if [ "$UPSTREAM" = "1" ]; then \
      git clone --depth 1 https://github.com/eProsima/foonathan_memory_vendor.git \
      && git clone --depth 1 https://github.com/eProsima/Fast-CDR.git \
      && git clone --depth 1 --branch "$FASTDDS_BRANCH" https://github.com/eProsima/Fast-DDS.git \
      && git clone --depth 1 --branch "$SUSTAINML_REF" --recurse-submodules https://github.com/eProsima/SustainML-Library.git \
      && for repo in foonathan_memory_vendor Fast-CDR Fast-DDS SustainML-Library/sustainml_cpp SustainML-Library/sustainml_swig; do \
           cmake -S "$repo" -B "build/$repo" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/opt/sustainml \
             -DCMAKE_PREFIX_PATH=/opt/sustainml -DBUILD_TESTING=OFF \
           && cmake --build "build/$repo" --parallel "$(nproc)" && cmake --install "build/$repo" || exit 1; \
         done \
      && pip install --no-cache-dir --prefix=/opt/sustainml SustainML-Library/sustainml_py; \
    else \
      mkdir -p /opt/sustainml; \
    fi

# ---- the node -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS node
ENV PYTHONDONTWRITEBYTECODE=1 \
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
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /opt/carbon-node
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

# Healthy when the node can run here (DDS binding, writable state dir); cheap: no heavy imports.
HEALTHCHECK --interval=60s --timeout=10s --start-period=10s --retries=3 CMD ["carbon-node", "doctor", "--quick"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["carbon-node"]
CMD ["run"]
