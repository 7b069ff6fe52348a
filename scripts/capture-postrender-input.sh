#!/usr/bin/env bash
# Captures what Helm 4 hands a postrenderer/v1 plugin (the combined stream of every rendered
# document, hooks included, each annotated with its template file) for the e2e chart
# tests/e2e/charts/plugged with a typo'd hook event, and stores it as
# tests/fixtures/postrender/helm4-input.yaml (read by tests/cli.rs).
#
# MAINTAINER TOOL, not part of `make test`: rerun when the pinned Helm 4 version changes and
# review the diff. `helm template` needs no cluster; the capturing plugin only copies its input.
#
# Usage: scripts/capture-postrender-input.sh [BIN_DIR]  (default: the last line of
# tests/e2e/tools/build.sh, which builds what is missing)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${1:-$("$repo/tests/e2e/tools/build.sh" | tail -n 1)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=$repo/tests/fixtures/postrender/helm4-input.yaml
mkdir -p "$work/plugin" "$(dirname "$out")"
cat >"$work/plugin/plugin.yaml" <<PLUGIN
apiVersion: v1
name: capture
version: 0.1.0
type: postrenderer/v1
runtime: subprocess
runtimeConfig:
  platformCommand:
    - command: sh
      args: ["-c", "tee $work/captured.yaml"]
PLUGIN
export HELM_DATA_HOME=$work/data HELM_CONFIG_HOME=$work/config HELM_CACHE_HOME=$work/cache
"$BIN/helm4" plugin install "$work/plugin" >/dev/null
"$BIN/helm4" template shop "$repo/tests/e2e/charts/plugged" -n shop \
	--set setup.events=pre-instal --set check.enabled=true \
	--post-renderer capture >/dev/null 2>&1 || true
{
	echo "# What Helm $("$BIN/helm4" version --short) sends a post-renderer plugin for"
	echo "# tests/e2e/charts/plugged (--set setup.events=pre-instal --set check.enabled=true)."
	echo "# Captured by scripts/capture-postrender-input.sh; do not edit."
	cat "$work/captured.yaml"
} >"$out"
echo "capture-postrender-input: wrote $out"
