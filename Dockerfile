# One image for every Defensa311 service: `defensa311 run <intake|router|deadlines|notifier>`,
# `defensa311 db upgrade`, `defensa311 deadlines sweep`, ...

# ---- build: wheels for the project and its dependencies (no compiler in the final image)
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN python -m venv /opt/defensa311 \
 && /opt/defensa311/bin/pip install --no-cache-dir .

# ---- runtime: the virtualenv and the institution's default configuration, as a non-root user
FROM python:3.11-slim
ENV PATH=/opt/defensa311/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DEFENSA311_CONFIG=/app/config/defensa311.toml \
    DEFENSA311_HTTP_HOST=0.0.0.0 \
    DEFENSA311_LOG_JSON=true
RUN groupadd --system --gid 10311 defensa311 \
 && useradd --system --uid 10311 --gid defensa311 --home-dir /app --shell /usr/sbin/nologin defensa311
WORKDIR /app
COPY --from=build /opt/defensa311 /opt/defensa311
COPY --chown=root:root config ./config
USER 10311:10311
EXPOSE 8000 9100

CMD ["defensa311", "run", "intake"]
