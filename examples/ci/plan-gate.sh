#!/usr/bin/env bash
# rayctl's CI gate. Run it from the repository root:
#
#   examples/ci/plan-gate.sh CATALOG_DIR [BASE_PLAN.json]
#
# 1. validates every recipe in $RAYCTL_RECIPES (default: recipes/);
# 2. checks every `schedule:` field (a dry-run sync into a throwaway crontab file);
# 3. plans all recipes against the pinned CATALOG_DIR -> $OUT/plan.json, where
#    OUT=${RAYCTL_CI_OUT:-.rayctl-ci} (same inputs, byte-identical file);
# 4. writes $OUT/plan.md, a markdown section for a pull-request comment: what changed
#    against BASE_PLAN.json (an earlier plan.json, e.g. the base branch's), or the whole
#    plan when there is no base.
#
# Needs no credentials, no network and no Ray. Exit code: 0 every recipe has an offer
# within its budget; 3 some recipe is over budget or has no feasible offer (one line per
# recipe on stderr); 2 invalid input (a recipe, a schedule, the catalog).
# $RAYCTL is the command to run (default: rayctl).
set -uo pipefail
export LC_ALL=C  # the order recipes/*.yaml expands to, and so the plan's order, is stable
if [ $# -lt 1 ]; then
    echo "usage: $0 CATALOG_DIR [BASE_PLAN.json]" >&2
    exit 2
fi
catalog=$1
base=${2:-}
read -r -a rayctl <<< "${RAYCTL:-rayctl}"
recipes=${RAYCTL_RECIPES:-recipes}
out=${RAYCTL_CI_OUT:-.rayctl-ci}
mkdir -p "$out"
shopt -s nullglob
files=("$recipes"/*.yaml "$recipes"/*.yml)
if [ ${#files[@]} -eq 0 ]; then
    echo "$0: no recipes (*.yaml, *.yml) in $recipes" >&2
    exit 2
fi

echo "== validate ${#files[@]} recipe(s)"
"${rayctl[@]}" validate "${files[@]}" || exit 2

echo "== check schedules"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
RAYCTL_HOME="$scratch/home" "${rayctl[@]}" schedule sync "$recipes" --dry-run \
    --crontab-file "$scratch/crontab" || exit 2

echo "== plan against $catalog"
"${rayctl[@]}" plan "${files[@]}" --json --catalog "$catalog" > "$out/plan.json" 2> "$out/plan-errors.txt"
rc=$?
cat "$out/plan-errors.txt" >&2
if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
    exit "$rc"
fi

if [ -z "$base" ] || [ ! -s "$base" ]; then
    base="$out/empty-plan.json"
    echo '{"plans": []}' > "$base"
fi
"${rayctl[@]}" plan "${files[@]}" --catalog "$catalog" --diff "$base" > "$scratch/diff.md" 2> "$scratch/diff-errors.txt"
drc=$?
if [ "$drc" -ne 0 ] && [ "$drc" -ne 3 ]; then
    grep -v '^rayctl: warning:' "$scratch/diff-errors.txt" >&2
    exit "$drc"
fi
{
    echo "<!-- rayctl-plan -->"
    cat "$scratch/diff.md"
    if [ "$rc" -eq 3 ]; then
        echo
        echo "**Over budget or no feasible offer** (exit 3):"
        echo
        grep '^rayctl: error:' "$out/plan-errors.txt" | sed -e 's/^rayctl: error: /- /'
    fi
} > "$out/plan.md"
echo "== wrote $out/plan.json and $out/plan.md (exit $rc)"
exit "$rc"
