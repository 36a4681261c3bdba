# syntax=docker/dockerfile:1.7
# bwsync container image: one directory → Bitwarden sync per `docker run`, or per CronJob run.
#
#   docker build -t bwsync .
#   docker run --rm --env-file sync.env -v ./secrets:/run/secrets/bwsync:ro bwsync        # sync
#   docker run --rm --env-file sync.env -v ./secrets:/run/secrets/bwsync:ro bwsync plan   # dry run
#
# PYTHON_IMAGE is any Debian-based image with Python >= 3.11: an official slim Python image (the
# default), or a plain Debian image with `python3` and `python3-venv` installed.
# Behind a TLS-intercepting proxy, pass its CA bundle as a build secret (never baked in):
#   docker build --secret id=build_ca,src=/etc/ssl/certs/ca-certificates.crt .
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# ---------------------------------------------------------------------------------------------
# builder: the locked dependencies and bwsync itself in a virtualenv at /opt/bwsync.
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=0 \
    UV_NO_CACHE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/bwsync

# A C compiler and libldap/libsasl headers build python-ldap; Python's own headers come with the
# official images and from python3-dev on plain Debian.
# hadolint ignore=DL3008
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev libldap2-dev libsasl2-dev \
         >/dev/null \
    && { [ -e "$(python3 -c 'import sysconfig; print(sysconfig.get_path("include"))')/Python.h" ] \
         || apt-get install -y -qq --no-install-recommends python3-dev >/dev/null; } \
    && rm -rf /var/lib/apt/lists/*

# uv, pinned, in a throwaway virtualenv (works whether or not the base ships pip).
RUN --mount=type=secret,id=build_ca,required=false \
    if [ -s /run/secrets/build_ca ]; then export PIP_CERT=/run/secrets/build_ca; fi; \
    python3 -m venv /opt/uv \
    && /opt/uv/bin/python -m pip install --quiet "uv==${UV_VERSION}"

WORKDIR /src
# Dependencies first, from the lock file alone, so editing the code does not redo this layer.
COPY pyproject.toml uv.lock ./
RUN --mount=type=secret,id=build_ca,required=false \
    if [ -s /run/secrets/build_ca ]; then export SSL_CERT_FILE=/run/secrets/build_ca; fi; \
    /opt/uv/bin/uv venv --python "$(command -v python3)" /opt/bwsync \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --extra fast-ldap

COPY README.md ./
COPY job ./job
RUN --mount=type=secret,id=build_ca,required=false \
    if [ -s /run/secrets/build_ca ]; then export SSL_CERT_FILE=/run/secrets/build_ca; fi; \
    /opt/uv/bin/uv sync --frozen --no-dev --no-editable --extra fast-ldap \
    && find /opt/bwsync -name '*.so' -exec strip --strip-unneeded {} + \
    && find /opt/bwsync -depth -name __pycache__ -type d -exec rm -rf {} + \
    && /opt/bwsync/bin/python -B -m bwsync --help >/dev/null

# ---------------------------------------------------------------------------------------------
# runtime: python-ldap's shared libraries and the virtualenv on the base, then cut down to what
# a run uses. Bytecode is shipped for the modules bwsync can import, and only for those (the
# read-only root filesystem could not cache it; compiling it on every run cost 0.2-0.8 s).
# Removed: the package manager (apt, dpkg's helpers perl and debconf, adduser), filesystem
# tools, pip, the standard library's test suite, IDLE, tkinter, lib2to3, ensurepip and
# distutils, iconv modules, headers, static libraries, man pages and docs. Kept: copyright
# files, and dpkg's database (it lists what is installed, for image scanners and SBOMs).
FROM ${PYTHON_IMAGE} AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# hadolint ignore=DL3008
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
         libldap-2.5-0 libsasl2-2 ca-certificates >/dev/null \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \
    && groupadd --system --gid 10001 bwsync \
    && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
         --shell /usr/sbin/nologin bwsync \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/bwsync \
    && install -d -m 0755 /run/secrets/bwsync

COPY --from=builder /opt/bwsync /opt/bwsync

# 1. Bytecode for what bwsync can import, and no other .pyc of the standard library
#    (docker/bytecode.py says how; mounted for this step, not copied into the image).
# 2. Pruning. 3. Every shared object left still finds its libraries; bwsync still starts.
RUN --mount=type=bind,source=docker/bytecode.py,target=/tmp/bytecode.py \
    /opt/bwsync/bin/python /tmp/bytecode.py \
    && stdlib="$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')" \
    && rm -rf "${stdlib:?}"/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,pydoc_data,distutils,venv,turtle.py} \
         "${stdlib:?}"/config-* "${stdlib:?}"/site-packages/{pip,setuptools,wheel}{,-*.dist-info} \
         /usr/local/bin/{pip,idle,2to3}* /usr/share/python-wheels /usr/include /usr/local/include \
    && find /usr -name '*.a' -type f -delete \
    && find /opt/bwsync/lib -mindepth 4 -maxdepth 4 -type d -name tests -exec rm -rf {} + \
    && { dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' apt libapt-pkg6.0 libstdc++6 gpgv \
           debian-archive-keyring adduser debconf perl-base e2fsprogs libext2fs2 libss2 logsave \
           python3-pip-whl python3-setuptools-whl 2>/dev/null || true; } \
       | awk '$1 == "ii" {print $2}' \
       | xargs -r dpkg --purge --force-remove-essential --force-depends >/dev/null \
    && find /usr/share/doc -mindepth 1 -not -type d -not -name copyright -delete \
    && find /usr/share/doc -mindepth 1 -type d -empty -delete \
    && rm -rf /usr/share/{man,info,locale,lintian,linda,bash-completion}/* /usr/lib/*-linux-gnu/gconv \
         /etc/apt /var/lib/apt /var/cache/* /var/log/* /var/lib/dpkg/*-old \
         /var/lib/dpkg/info/*.{md5sums,symbols,shlibs,templates} \
    && ! { find /usr/bin /usr/local/bin /usr/lib /usr/local/lib /opt/bwsync -name '*.so*' -type f \
             -exec ldd {} + 2>/dev/null || true; } | grep 'not found' \
    && /opt/bwsync/bin/bwsync --help >/dev/null

# ---------------------------------------------------------------------------------------------
# The image: the runtime stage's root filesystem as one layer, so what was removed above is not
# shipped underneath (the base image's layers would otherwise stay whole).
FROM scratch
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
# hadolint ignore=DL3067
COPY --from=runtime / /

LABEL org.opencontainers.image.title="bwsync" \
      org.opencontainers.image.description="Sync a company directory into a Bitwarden organization: one safe, stateless sync pass per run." \
      org.opencontainers.image.url="https://github.com/bwsync/bwsync" \
      org.opencontainers.image.source="https://github.com/bwsync/bwsync" \
      org.opencontainers.image.documentation="https://github.com/bwsync/bwsync/blob/main/docs/container.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="bwsync" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

# Read-only root filesystem: nothing is written but /tmp and mounted volumes (the file state
# backend's default directory is a volume; Kubernetes uses the configmap or objectstore state).
# FROM scratch inherits no environment: PATH and LANG are the base images' own.
ENV PATH="/opt/bwsync/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp
VOLUME ["/var/lib/bwsync"]
WORKDIR /tmp
USER 10001:10001

ENTRYPOINT ["bwsync"]
CMD ["sync"]
