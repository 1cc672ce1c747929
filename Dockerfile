# Ponder's image: one image runs every Ponder service (migrations, workers, bots, beat, Flower);
# docker-compose.yml picks the `ponder` subcommand per service.

FROM python:3.12-slim-bookworm AS build

# llama-cpp-python is a dependency even when the model runs on Ollama, and it compiles llama.cpp.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# Build llama.cpp for the widely available AVX2 instruction set instead of the build machine's
# own, so that the image also runs on hosts with an older or different CPU.
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python -m venv /opt/ponder
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bots ./bots
COPY core ./core
COPY tasks ./tasks
COPY migrations ./migrations
RUN /opt/ponder/bin/pip install '.[monitoring]'


FROM python:3.12-slim-bookworm

# libgomp1: llama.cpp's OpenMP runtime. tini: forwards signals so that workers shut down warmly.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libgomp1 tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 ponder \
    && mkdir -p /var/lib/ponder \
    && chown ponder:ponder /var/lib/ponder

COPY --from=build /opt/ponder /opt/ponder
ENV PATH="/opt/ponder/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PONDER_DATA_DIR=/var/lib/ponder

USER ponder
WORKDIR /var/lib/ponder
ENTRYPOINT ["tini", "--", "ponder"]
CMD ["--help"]
