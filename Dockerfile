# The directory as one image: `docker build -t plc-directory . && docker run -p 2582:2582 -v plc-data:/data plc-directory`
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PLC_HOST=0.0.0.0 \
    PLC_PORT=2582 \
    DATABASE_URL=sqlite:////data/plc-directory.sqlite3

WORKDIR /app
COPY pyproject.toml README.md constraints.txt ./
COPY plc ./plc
COPY auditor ./auditor
# the versions CI tested, not whatever is newest on the day of the build
RUN pip install --no-cache-dir -c constraints.txt . \
 && useradd --system --uid 10001 --home /data plc \
 && mkdir -p /data && chown plc /data

USER plc
VOLUME ["/data"]
EXPOSE 2582
# GET /_health on the server's own port: its database check, not only a live process
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["plc", "health"]
ENTRYPOINT ["plc", "serve"]
