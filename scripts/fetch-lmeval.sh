#!/usr/bin/env bash
# fetch-lmeval.sh — lm-evaluation-harness's source at the pinned commit into .cache/lm-eval, for
# tests/integration/test_lmeval.py: the lm_eval package only (never installed: no torch, no datasets)
# plus a dist-info stub so importlib.metadata finds its version. Its API client's Debian packages come
# from scripts/setup.sh.
#
#   scripts/fetch-lmeval.sh            download from GitHub (codeload tarball)
#   scripts/fetch-lmeval.sh GIT_DIR    from a clone or bare mirror that has the commit (no network)
set -euo pipefail
cd "$(dirname "$0")/.."
commit=4e7e0d47f33bc71070c1d38394bafbb52b117163
dst=.cache/lm-eval tmp=.cache/lm-eval.tmp
if [ -f "$dst/COMMIT" ] && [ "$(cat "$dst/COMMIT")" = "$commit" ]; then exit 0; fi
rm -rf "$tmp"
mkdir -p "$tmp"
if [ $# -ge 1 ]; then
    git --git-dir="$1" archive "$commit" lm_eval pyproject.toml | tar -x -C "$tmp"
else
    curl -fsSL --retry 2 "https://codeload.github.com/EleutherAI/lm-evaluation-harness/tar.gz/$commit" |
        tar -xz -C "$tmp" --strip-components=1 "lm-evaluation-harness-$commit/lm_eval" \
            "lm-evaluation-harness-$commit/pyproject.toml"
fi
v=$(sed -n 's/^version = "\(.*\)"/\1/p' "$tmp/pyproject.toml" | head -1)
mkdir -p "$tmp/lm_eval-$v.dist-info"
printf 'Metadata-Version: 2.1\nName: lm_eval\nVersion: %s\n' "$v" >"$tmp/lm_eval-$v.dist-info/METADATA"
echo "$commit" >"$tmp/COMMIT"
rm -rf "$dst"
mv "$tmp" "$dst"
echo "fetch-lmeval: lm-evaluation-harness $v ($commit) in $dst"
