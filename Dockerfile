# Kandinsky 2.2 Telegram bot.
#   docker build -t kandinsky-bot .
#   docker run --gpus all --env-file .env -v kandinsky-data:/data kandinsky-bot
# PyTorch 2.13's Linux wheels are built for CUDA 13 (they bring their own CUDA libraries);
# this CUDA 13.0 runtime base matches them. The host needs an NVIDIA driver for CUDA 13
# (580 or newer) and the NVIDIA Container Toolkit.
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/data/huggingface \
    DATA_DIR=/data \
    HTTP_PORT=8080

# gcc and the Python headers: Triton builds its kernel launcher with them at run time, and
# COMPILE=auto (the default) compiles the models on the GPU. Without them the bot falls back
# to drawing uncompiled, about twice as slow (pytorch/pytorch#116696).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md config.py main.py ./
COPY bot ./bot
COPY generation ./generation

# The same install command as the README and .ci/run.
RUN python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e .

RUN useradd --create-home --uid 10001 bot && mkdir -p /data && chown 10001 /data
USER 10001
# The models download once into the Hugging Face cache here; the job journal lives here too.
VOLUME /data

# /health on the bot's own HTTP server (127.0.0.1:8080 inside the container). The first
# start downloads about 10 GB of models, hence the long start period.
HEALTHCHECK --interval=30s --timeout=10s --start-period=20m --retries=3 CMD [".venv/bin/python", "main.py", "health"]

# The same start command as the README. SIGTERM (docker stop) finishes the running batch.
CMD [".venv/bin/python", "main.py"]
