# syntax=docker/dockerfile:1
# One image for every sharing-guard process; the command picks the service:
#   sharing-guard worker            the guard (health and metrics on :6066)
#   sharing-guard orders serve      the order workflow service (:8090)
#   sharing-guard alerts            the alerts service (:8091)
#   audit-sink ingest               the audit trail writer (no HTTP endpoint)
#   audit-sink serve --host 0.0.0.0 the security team's read-only API (:8088)
#   python /app/scripts/kafka/topics.py --bootstrap-server HOST:PORT create-topics
# Configuration comes only from the environment (docs/operations.md); the image holds no
# secret, key or password. Pin the base by digest in your registry mirror if you need
# byte-for-byte rebuilds: docker buildx imagetools inspect python:3.11.14-slim-bookworm.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only what the package build needs: the project metadata, the locked versions, the two
# service packages and the Avro schemas (services/sharing_guard/avro links to schemas/avro).
COPY pyproject.toml README.md constraints.txt ./
COPY services ./services
COPY schemas/avro ./schemas/avro
# constraints.txt: exactly the versions `make test` ran with (`make lock` writes it).
RUN /opt/venv/bin/pip install --no-compile -c constraints.txt . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="sharing-guard" \
      org.opencontainers.image.description="Kafka-native data-sharing governance: guard, audit sink, order workflow, alerts" \
      org.opencontainers.image.source="https://example.invalid/sharing-guard"
# A fixed numeric non-root user, so that Kubernetes' runAsNonRoot can check it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/app --create-home \
       --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/sharing-guard /var/lib/sharing-guard-orders \
       /var/lib/audit-sink \
       /var/lib/audit-sink/keys /var/lib/audit-sink/checkpoints
COPY --from=build /opt/venv /opt/venv
# The topic declaration and its reader: the one-shot topic job runs them from this image.
COPY scripts/kafka/topics.py scripts/kafka/topics.txt /app/scripts/kafka/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SHARING_GUARD_WEB_HOST=0.0.0.0 \
    SHARING_GUARD_DATA_DIR=/var/lib/sharing-guard \
    AUDIT_SINK_DATA_DIR=/var/lib/audit-sink
WORKDIR /home/app
USER 10001:10001
EXPOSE 6066 8088 8090 8091
CMD ["sharing-guard", "--help"]
