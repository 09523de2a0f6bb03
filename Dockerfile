# One image for the API and both workers. TORCH_INDEX picks the torch build: CPU wheels (small)
# for the API and the CPU worker, CUDA wheels for the GPU worker (see docker-compose.yml, which
# gives every container the variables of mlft.env). /data is each container's own folder:
# nothing in it is shared, everything shared lives in PostgreSQL, Redis and S3.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MLFT_DATA_DIR=/data
WORKDIR /app

RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

COPY pyproject.toml README.md ./
COPY api ./api
COPY core ./core
COPY worker ./worker
COPY migrations ./migrations
COPY scripts ./scripts
RUN pip install --no-cache-dir . && useradd --create-home mlft && mkdir -p /data \
    && chown mlft /data
USER mlft

EXPOSE 8000
CMD ["mlft-server", "--host", "0.0.0.0", "--port", "8000"]
