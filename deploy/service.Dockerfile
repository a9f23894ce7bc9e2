# One Dockerfile for every Lethe binary: docker build --build-arg SERVICE=identity -f deploy/service.Dockerfile .
# The build context is the repository root, because services build in the go.work workspace
# with gen/ and platform/.
FROM golang:1.26.8-bookworm AS build
ARG SERVICE
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/lethe-service ./services/${SERVICE}/cmd/${SERVICE}

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/lethe-service /lethe-service
ENV LETHE_DATA_DIR=/data LETHE_LOG_FORMAT=json
VOLUME /data
ENTRYPOINT ["/lethe-service"]
