# Latchkey image: a static binary on a distroless base, running as non-root.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) --build-arg DATE=$(git log -1 --format=%cI) -t latchkey .
#
# The binary is built by scripts/release.sh, exactly as a release is.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=unknown
RUN VERSION=$VERSION COMMIT=$COMMIT DATE=$DATE scripts/release.sh -o /out/latchkey \
 && mkdir -p /out/data

# distroless/static: no shell, no package manager, CA certificates and
# /etc/passwd with the "nonroot" user (65532) only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/latchkey /usr/local/bin/latchkey
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
WORKDIR /data
# Listen on every interface inside the container; the embedded store (when
# no database.dsn is set) lives on the /data volume.
ENV LATCHKEY_LISTEN=0.0.0.0:8080 \
    LATCHKEY_DATABASE_PATH=/data/latchkey.db
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/latchkey"]
CMD ["serve"]
