# syntax=docker/dockerfile:1
# One image for every Forge process; the command picks which: forge-broker (the default),
# forge-gateway, workerd, or the forge CLI. See docker-compose.yml and docs/operations.md.

# The dashboard's static build, served by the gateway.
FROM node:20-slim AS dashboard
WORKDIR /src/dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY dashboard/ ./
RUN npm run build

# Generate the gRPC code (make proto), then install every distribution into a self-contained venv.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN make proto PYTHON=python3 \
 && python3 -m venv /opt/forge \
 && /opt/forge/bin/pip install --no-cache-dir --disable-pip-version-check \
      ./clients/python ./common ./broker ./workerd ./gateway

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /app forge
COPY --from=build /opt/forge /opt/forge
COPY --from=dashboard /src/dashboard/dist /app/dashboard/dist
ENV PATH=/opt/forge/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    FORGE_DASHBOARD_DIR=/app/dashboard/dist
WORKDIR /app
USER forge
# Every process drains on SIGTERM (workerd within WORKERD_GRACE), so let Docker send it.
STOPSIGNAL SIGTERM
EXPOSE 50051 8080
CMD ["forge-broker"]
