# immich-integrity as a container image, to run inside Immich's own compose project
# (docker-compose.integrity.yml). Both stages start from Debian; scripts/container.sh makes the
# base image from Debian's packages (debootstrap) where no registry can be pulled.
#   docker build -t immich-integrity .
# Debian 13 (trixie): FFmpeg 7.1, which the ffmpeg-next 7 bindings support, and a recent Rust
# as rustc-web/cargo-web (its plain rustc 1.85 is older than the lock file's crates want).
ARG DEBIAN=trixie

FROM debian:${DEBIAN}-slim AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates cargo-web rustc-web pkg-config clang libclang-dev \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev \
      libavdevice-dev libheif-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# With a vendor/ folder (`cargo vendor`, as scripts/container.sh makes), the build reads the
# crates from it and needs no network.
RUN if [ -d vendor ]; then \
      mkdir -p .cargo \
      && printf '[source.crates-io]\nreplace-with = "vendored"\n[source.vendored]\ndirectory = "vendor"\n' \
         > .cargo/config.toml; \
    fi \
 && cargo build --release --locked -p immich-integrity-cli \
 && install -m 0755 target/release/immich-integrity /usr/local/bin/immich-integrity

FROM debian:${DEBIAN}-slim
# FFmpeg's libraries decode videos and strict JPEGs at --level full; the ffmpeg package brings
# them with every decoder Debian ships. libheif decodes HEIC (libde265) and AVIF (dav1d)
# through plugins it loads at start.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ffmpeg ca-certificates libheif1 libheif-plugin-libde265 libheif-plugin-dav1d \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --user-group --home-dir /state --create-home immich-integrity
COPY --from=build /usr/local/bin/immich-integrity /usr/local/bin/immich-integrity
# Journals, regenerate state and restore lists; mount a volume here to keep them.
ENV IMMICH_INTEGRITY_STATE_DIR=/state
# Not root: docker-compose.integrity.yml runs it as Immich's server user.
USER 1000:1000
WORKDIR /state
ENTRYPOINT ["immich-integrity"]
CMD ["scan"]
