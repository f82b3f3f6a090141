# trajstream application image.
# Talks to an external Kafka and Schema Registry (see docker-compose.yml),
# so no JVM is installed here.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRAJSTREAM_HOME=/var/lib/trajstream

# Unprivileged runtime user and its state directory.
RUN groupadd --system --gid 10001 trajstream \
 && useradd --system --uid 10001 --gid trajstream --home-dir /home/trajstream \
        --create-home --shell /usr/sbin/nologin trajstream \
 && mkdir -p /var/lib/trajstream \
 && chown trajstream:trajstream /var/lib/trajstream

WORKDIR /app

# Pinned dependencies first, so this layer is cached across code changes.
COPY pyproject.toml requirements.lock README.md ./
RUN pip install --no-cache-dir -r requirements.lock

# Project sources: the contract, the SDK (which ships schemas/ as package data), the core and its stages
# (trajstream/streams, ... are links to the top-level folders; the wheel holds them as trajstream.streams, ...).
COPY schemas/ ./schemas/
COPY sdk/python/ ./sdk/python/
COPY trajstream/ ./trajstream/
COPY streams/ ./streams/
COPY consumers/ ./consumers/
COPY trainer/ ./trainer/
RUN pip install --no-cache-dir --no-deps ./sdk/python .

USER trajstream
VOLUME ["/var/lib/trajstream"]

ENTRYPOINT ["trajstream"]
CMD ["--help"]
