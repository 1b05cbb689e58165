# The recognition side in a container: the page and REST API serving the bundled ONNX model on onnxruntime,
# without PyTorch (the base install plus the `serve` extra, at the versions constraints.txt pins).
#
#   docker build -t digitlab .
#   docker run --rm -p 8000:8000 -e DIGITLAB_API_KEY=$(openssl rand -hex 16) digitlab
#   docker run --rm -p 8000:8000 -v $PWD/model.onnx:/models/model.onnx:ro digitlab \
#       digitlab serve --host 0.0.0.0 --model /models/model.onnx      # your own export instead
#
# Inside a container the server must listen on 0.0.0.0 to be reached through the published port; which machines
# may reach it is decided by `-p` (here: every one that reaches the host's port 8000). Set DIGITLAB_API_KEY (and
# --rate-limit) for anything beyond this machine. Logs are JSON lines with request ids; metrics at /metrics.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY src ./src
RUN pip install -c constraints.txt '.[serve]' \
    && python -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is not None)" \
    && useradd --create-home --uid 10001 digitlab \
    && rm -rf /src

USER digitlab
WORKDIR /home/digitlab
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4)"
CMD ["digitlab", "serve", "--host", "0.0.0.0", "--port", "8000", "--backend", "onnx", "--log-format", "json"]
