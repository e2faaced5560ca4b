# liberator as a container: `docker build -t liberator .` (deploy/README.md shows how to run it).
# Slim base, non-root, HEALTHCHECK on /health/live; config and secrets are mounted, never baked in.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY liberator ./liberator
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/liberator --create-home --shell /usr/sbin/nologin liberator
# The config (http.listen must be 0.0.0.0:9400 for the probes) and the secrets it reads with ${file:...}:
VOLUME ["/etc/liberator", "/run/secrets/liberator"]
WORKDIR /var/lib/liberator
USER 10001:10001
EXPOSE 9400
# Liveness only: a broker or database outage is not cured by a restart (/health/ready reports those).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9400/health/live', timeout=4)"]
# SIGTERM (docker stop) finishes in-flight deliveries and stores positions within shutdown_timeout (30s):
STOPSIGNAL SIGTERM
ENTRYPOINT ["liberator"]
CMD ["run", "/etc/liberator/liberator.yaml"]
