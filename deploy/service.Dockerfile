# One Dockerfile for every Lethe binary:
#   docker build --build-arg SERVICE=identity -f deploy/service.Dockerfile .
#   docker build --build-arg SERVICE=temporal --build-arg PACKAGE=./devstack/cmd/lethe-temporal -f deploy/service.Dockerfile .
# The build context is the repository root, because services build in the go.work
# workspace with gen/ and platform/. Every image also carries /lethe-probe, the health
# check (the base image has no shell or curl).
FROM golang:1.26.8-bookworm AS build
ARG SERVICE
ARG PACKAGE=./services/${SERVICE}/cmd/${SERVICE}
# Build tags; the defaults link fulfillment's s3://, gs:// and azblob:// archive-storage
# drivers. Link only the one you use (e.g. --build-arg TAGS=lethe_s3): each SDK costs
# resident memory whether used or not (docs/services.md, Memory).
ARG TAGS=lethe_s3,lethe_gcs,lethe_azblob
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -tags "${TAGS}" -o /out/lethe-service ${PACKAGE} && \
    CGO_ENABLED=0 go build -trimpath -o /out/lethe-probe ./platform/cmd/lethe-probe && \
    mkdir -p /out/data /out/keys /out/archives

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lethe-service /lethe-service
COPY --from=build /out/lethe-probe /lethe-probe
# Volumes mounted here start owned by the nonroot user, so the service can write them.
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/keys /keys
COPY --from=build --chown=65532:65532 /out/archives /archives
ENV LETHE_DATA_DIR=/data LETHE_LOG_FORMAT=json
VOLUME /data
ENTRYPOINT ["/lethe-service"]
