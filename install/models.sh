#!/usr/bin/env bash
# Installs the models listed in models/manifest.toml into models/, refusing any file whose size or
# sha256 differs from the manifest. Quiet and quick when they are already in place.
#   install/models.sh [MIRROR]
# Where each file comes from, first match wins:
#   MIRROR (argument) or $MODEL_MIRROR    a folder holding the files; a missing file there is an error
#   ../shared/models beside the repository, when that folder exists
#   the upstream release URL in the manifest (curl or wget)
# $MODELS_DIR installs elsewhere than models/ (the tests use it).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
manifest="$repo/models/manifest.toml"
dest="${MODELS_DIR:-$repo/models}"
mirror="${1:-${MODEL_MIRROR:-}}"
explicit=1
if [ -z "$mirror" ]; then
  explicit=0
  [ -d "$repo/../shared/models" ] && mirror="$repo/../shared/models"
fi

say() { printf '[models.sh] %s\n' "$*" >&2; }

python=""
for cand in "${PYTHON:-}" "$repo/.venv/bin/python" python3.11 python3; do
  [ -n "$cand" ] || continue
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import tomllib' 2>/dev/null; then python="$cand"; break; fi
done
[ -n "$python" ] || { say "need Python 3.11 or newer to read $manifest"; exit 1; }

entries=$("$python" - "$manifest" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    models = tomllib.load(f)
for name, m in models.items():
    print("\t".join([name, m["file"], m["sha256"], str(m["size"]), m.get("source", "")]))
PY
)

checksum() { sha256sum "$1" | cut -d' ' -f1; }

# ok FILE SHA SIZE: the file is there with the listed size and checksum
ok() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$3" ] && [ "$(checksum "$1")" = "$2" ]; }

fetch() {
  local url=$1 out=$2
  if command -v curl >/dev/null 2>&1; then curl -fsSL --retry 2 -o "$out" "$url"
  elif command -v wget >/dev/null 2>&1; then wget -q -O "$out" "$url"
  else say "neither curl nor wget is installed; cannot download $url"; return 1; fi
}

mkdir -p "$dest"
status=0
while IFS=$'\t' read -r name file sha size url; do
  target="$dest/$file"
  ok "$target" "$sha" "$size" && continue
  [ -e "$target" ] && say "$file: installed copy has the wrong size or checksum; replacing it"
  tmp=$(mktemp "$dest/.$file.XXXXXX")
  if [ -n "$mirror" ] && { [ -f "$mirror/$file" ] || [ "$explicit" = 1 ]; }; then
    if [ ! -f "$mirror/$file" ]; then
      say "$file: not in the mirror folder $mirror"; rm -f "$tmp"; status=1; continue
    fi
    from="$mirror/$file"
    cp "$from" "$tmp"
  else
    [ -n "$url" ] || { say "$file ($name): no mirror and no source URL"; rm -f "$tmp"; status=1; continue; }
    from="$url"
    say "$file: downloading $url"
    fetch "$url" "$tmp" || { say "$file: download failed"; rm -f "$tmp"; status=1; continue; }
  fi
  if ! ok "$tmp" "$sha" "$size"; then
    say "$file: REFUSED: $from has size $(stat -c %s "$tmp") and sha256 $(checksum "$tmp"); the manifest says $size and $sha"
    rm -f "$tmp"; status=1; continue
  fi
  chmod 0644 "$tmp"
  mv -f "$tmp" "$target"
  say "$file: installed from $from (sha256 checked)"
done <<< "$entries"
exit $status
