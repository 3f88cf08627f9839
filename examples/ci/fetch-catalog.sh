#!/usr/bin/env bash
# Fetch SkyPilot's price catalog at one pinned commit, for byte-identical CI plans.
#
#   examples/ci/fetch-catalog.sh REF DEST [CLOUD...]
#
# REF    a full commit SHA of github.com/skypilot-org/skypilot-catalog
# DEST   folder to write, in SkyPilot's layout: DEST/<cloud>/vms.csv (catalogs/v7)
# CLOUD  clouds to fetch (default: aws gcp lambda runpod)
#
# DEST/AS_OF gets the commit's date, so `rayctl plan` reports the same "as of" date on
# every run (without it rayctl would fall back to the files' modification time). Set
# GITHUB_TOKEN to lift the GitHub API's rate limit (GitHub Actions provides one).
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 REF DEST [CLOUD...]" >&2
    exit 2
fi
ref=$1 dest=$2
shift 2
if ! [[ $ref =~ ^[0-9a-f]{40}$ ]]; then
    echo "$0: REF must be a full 40-character commit SHA (a branch name is not a pin), got '$ref'" >&2
    exit 2
fi
clouds=("$@")
[ ${#clouds[@]} -gt 0 ] || clouds=(aws gcp lambda runpod)
raw="https://raw.githubusercontent.com/skypilot-org/skypilot-catalog/$ref/catalogs/v7"
auth=()
[ -z "${GITHUB_TOKEN:-}" ] || auth=(-H "Authorization: Bearer $GITHUB_TOKEN")
for cloud in "${clouds[@]}"; do
    mkdir -p "$dest/$cloud"
    curl -fsSL --retry 3 "$raw/$cloud/vms.csv" -o "$dest/$cloud/vms.csv"
done
curl -fsSL --retry 3 "${auth[@]}" "https://api.github.com/repos/skypilot-org/skypilot-catalog/commits/$ref" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["commit"]["committer"]["date"][:10])' \
    > "$dest/AS_OF"
echo "catalog $ref as of $(cat "$dest/AS_OF"): ${clouds[*]} -> $dest"
