# Kandinsky 2.2 Telegram bot.
#   docker build -t kandinsky-bot .
#   docker run --gpus all --init --env-file .env -v kandinsky-data:/data kandinsky-bot
# The host needs an NVIDIA driver for CUDA 13 (580 or newer) and the NVIDIA Container Toolkit,
# which mounts the driver into the container. Nothing else of CUDA is needed from the image:
# PyTorch 2.13's Linux wheels bring their own CUDA libraries, so a plain Python base serves
# (a CUDA runtime base would hold a second copy of them, about 2.6 GB).
# Python 3.11: the version the tests run on.
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/data/huggingface \
    TRITON_CACHE_DIR=/data/triton \
    DATA_DIR=/data \
    HTTP_PORT=8080

# gcc: Triton builds its kernel launcher with it at run time (the Python headers come with this
# base), and COMPILE=auto (the default) compiles the models on the GPU. Without it the bot
# falls back to drawing uncompiled, about twice as slow (pytorch/pytorch#116696).
# tini: PID 1 that reaps the worker processes torch.compile starts and passes on SIGTERM.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev tini \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# The dependencies first, read from pyproject.toml alone: editing the code does not rebuild
# this multi-GB layer. The same pins as the README's install command (torch==2.13.0 plus
# pyproject's dependencies); the code itself runs from /app, with no editable install.
COPY pyproject.toml ./
RUN python3 -m venv .venv \
    && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
    | .venv/bin/pip install torch==2.13.0 -r /dev/stdin

COPY config.py main.py ./
COPY bot ./bot
COPY generation ./generation

# Runs as uid 10001, or as any uid given with --user (for a bind-mounted DATA_DIR owned by
# you: --user "$(id -u):$(id -g)"); everything it writes goes under /data.
RUN useradd --create-home --uid 10001 bot && mkdir -p /data && chown 10001 /data
USER 10001
# The models download once into the Hugging Face cache here; the job journal and the
# compile caches live here too.
VOLUME /data

# /health on the bot's own HTTP server (127.0.0.1:8080 inside the container). `main.py health`
# passes while the models download, load or compile (the bot answers users meanwhile and
# queues their requests), so the first start's 10 GB download needs no long start period; it
# fails when the models failed to load or the bot stopped answering.
HEALTHCHECK --interval=30s --timeout=10s --start-period=2m --retries=3 CMD [".venv/bin/python", "main.py", "health"]

# The same start command as the README. SIGTERM (docker stop) finishes the running batch.
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD [".venv/bin/python", "main.py"]
