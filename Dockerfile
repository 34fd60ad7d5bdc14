FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    WITHSENSE_DATA_DIR=/data \
    WITHSENSE_ONNX_DIR=/app/onnx

WORKDIR /app

# torch first, in its own layer, so it stays cached while the app code changes. Point
# PIP_EXTRA_INDEX_URL at a CPU-only wheel index to keep CUDA libraries out of the image.
ARG PIP_EXTRA_INDEX_URL=""
RUN pip install torch==2.13.0

COPY . .
# The networks are exported to ONNX once, here: the server runs them without torch.
RUN pip install -e . \
    && withsense models export \
    && useradd --create-home --uid 10001 withsense \
    && mkdir -p /data \
    && chown withsense:withsense /data

USER withsense
EXPOSE 8000
CMD ["sh", "-c", "withsense migrate && exec gunicorn -w 2 -b 0.0.0.0:8000 'service:create_app()'"]
