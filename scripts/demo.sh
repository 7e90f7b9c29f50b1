#!/usr/bin/env bash
# The main job on embedded defaults: every step is a plain `tagsmith` command, so this
# file doubles as a walkthrough. Usage: scripts/demo.sh [SCRATCH_DIR]
set -euo pipefail
DEMO=${1:-.demo}
CUSTOMERS=${TAGSMITH_DEMO_CUSTOMERS:-5000}
rm -rf "$DEMO"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "tagsmith init: a project in $DEMO"
tagsmith --project "$DEMO" init

step "tagsmith generate: $CUSTOMERS synthetic customers over 2023-2024 into $DEMO/raw"
tagsmith --project "$DEMO" generate --customers "$CUSTOMERS" --seed 7 --out "$DEMO/raw"

step "tagsmith facts import: validate the generated files into the fact store"
tagsmith --project "$DEMO" facts import --customers "$DEMO/raw/customers.csv" --events "$DEMO/raw/events.csv"

step "tagsmith facts summary"
tagsmith --project "$DEMO" facts summary
