# One image for every rebill process (worker, beat, flower, the simulator, the CLI).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 REBILL_DATA_DIR=/var/lib/rebill
WORKDIR /app
COPY pyproject.toml README.md ./
COPY orchestrator ./orchestrator
COPY workers ./workers
COPY simulators ./simulators
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/rebill rebill \
    && mkdir -p /var/lib/rebill && chown rebill /var/lib/rebill
USER rebill
ENTRYPOINT ["rebill"]
