# raftkv in an image FROM scratch: the static binary, a non-root user and a /data volume, nothing else.
#
#   make image                     # = make build, then docker build -t raftkv:latest .
#   docker run -d -p 127.0.0.1:7000:7000 -v raftkv-data:/data raftkv:latest --bootstrap-expect 1
#
# The binary must be built first with CGO_ENABLED=0 (`make build` does): scratch has no libc.
# Configuration is by flag (appended to the ENTRYPOINT) or RAFTKV_* environment variable; see
# `raftkv serve --help` and deploy/README.md.
FROM scratch

# /etc/passwd and /etc/group name the numeric user; /data is an empty directory owned by it, so a
# fresh named volume mounted there inherits that ownership.
COPY deploy/rootfs/etc/ /etc/
COPY --chown=65532:65532 deploy/rootfs/data/ /data/
COPY bin/raftkv /usr/local/bin/raftkv

ENV PATH=/usr/local/bin \
    RAFTKV_HTTP_ADDR=0.0.0.0:7000 \
    RAFTKV_RAFT_ADDR=0.0.0.0:7001 \
    RAFTKV_GOSSIP_ADDR=0.0.0.0:7002 \
    RAFTKV_DATA_DIR=/data \
    RAFTKV_ADDR=127.0.0.1:7000

USER 65532:65532
VOLUME ["/data"]
# HTTP API, node-to-node (Raft and forwarding), gossip (TCP and UDP).
EXPOSE 7000/tcp 7001/tcp 7002/tcp 7002/udp

# No shell or curl in scratch: the binary is its own probe. `cluster status` exits 0 once the local
# node answers GET /v1/cluster (process up and serving HTTP), non-zero otherwise.
HEALTHCHECK --interval=5s --timeout=4s --start-period=10s --retries=3 \
    CMD ["raftkv", "cluster", "status", "--addr", "127.0.0.1:7000", "--timeout", "3s"]

ENTRYPOINT ["raftkv", "serve"]
