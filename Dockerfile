# Kandinsky 2.2 Telegram bot. Run: docker run --gpus all --env-file .env -v kandinsky-data:/data kandinsky-bot
# PyTorch's Linux wheels bring their own CUDA runtime; the host's NVIDIA driver comes in
# through the NVIDIA Container Toolkit (--gpus all).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/data/huggingface \
    DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md config.py main.py ./
COPY bot ./bot
COPY generation ./generation

# The same install command as the README and .ci/run.
RUN pip install torch==2.13.0 -e .

RUN useradd --create-home --uid 1000 bot && mkdir -p /data && chown bot /data
USER bot
# Models download once into the Hugging Face cache on this volume.
VOLUME /data

# The same start command as the README.
CMD ["python", "main.py"]
