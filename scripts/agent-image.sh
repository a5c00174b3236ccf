#!/usr/bin/env bash
# Builds the traffic-agent image (`kloop agent`) without Docker or a registry:
# ko's build pipeline, as a library in tools/agentimage (its own module, so the
# main go.mod stays free of ko), on an empty base image made in-process.
#
#   scripts/agent-image.sh [--image REF] [--out FILE] [--version V] [--platform linux/amd64]
#
# Writes bin/kloop-agent-image.tar: an OCI image layout that is also a
# `docker load` archive. The reference is --image, else $KLOOP_AGENT_IMAGE,
# else intercept.DefaultImage() (kube/intercept/inject.go) for the version;
# --version (or $KLOOP_VERSION) is linked into main.version and
# intercept.Version. SOURCE_DATE_EPOCH sets the image's timestamps (default 0).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
exec "${GO:-go}" -C "$root/tools/agentimage" run . --dir "$root" "$@"
