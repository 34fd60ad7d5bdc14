FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WITHSENSE_DATA_DIR=/data \
    WITHSENSE_ONNX_DIR=/app/onnx \
    WITHSENSE_BIND=0.0.0.0:8000

WORKDIR /app

# The lock pins torch 2.13.0+cpu, the CPU-only build: PyPI's plain Linux torch wheel is the CUDA
# build and drags several GB of nvidia-* libraries into the image. The +cpu wheel lives on
# PyTorch's CPU index; point TORCH_INDEX at a mirror of it if that host is not reachable.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

# Debian's English-Russian dictionary, read when a ranker is trained (WITHSENSE_GLOSS_DICTIONARY:
# a Russian query's words are glossed by its translations, ml/gloss_dictionary.py).
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends mueller7-dict \
    && rm -rf /var/lib/apt/lists/*

# Dependencies in their own layer, from the lock file alone: a code change reuses this layer.
COPY requirements.lock ./
RUN pip install --extra-index-url "$TORCH_INDEX" -r requirements.lock

COPY pyproject.toml README.md alembic.ini ./
COPY migrations ./migrations
COPY ml ./ml
COPY service ./service
# The 12 photos the int8 copies of the image networks are calibrated on (ml/onnx_quantize.py):
# `models export` below makes them, and a new library runs them (WITHSENSE_IMAGE_PRECISION).
COPY tests/fixtures/dataset/train_images ./tests/fixtures/dataset/train_images
# --no-deps: everything came from the lock above. Editable, so alembic.ini and migrations/ stay
# where service.config.REPO_ROOT looks for them.
# The networks are exported to ONNX once, here: the server runs them without torch.
RUN pip install --no-deps -e . \
    && withsense models export \
    && useradd --create-home --uid 10001 withsense \
    && mkdir -p /data \
    && chown withsense:withsense /data

USER withsense
EXPOSE 8000
# gunicorn_conf.py: warm-up of each worker before it takes requests, thread cap, timeouts.
# Migrations, dataset and training are the compose stack's one-shot `init` service, not this.
CMD ["gunicorn", "-c", "service/gunicorn_conf.py"]
