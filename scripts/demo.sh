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

step "tagsmith features build: point-in-time features as of the day after the last event"
tagsmith --project "$DEMO" features build

step "tagsmith tags validate: the standard tag catalogue (schema, naming, rule syntax and types)"
tagsmith --project "$DEMO" tags validate

step "tagsmith tags apply: record catalogue version 1"
tagsmith --project "$DEMO" tags apply

step "tagsmith tags evaluate: every standard rule tag as of the day after the last event, with sizes"
tagsmith --project "$DEMO" tags evaluate

step "tagsmith tags backtest: would 'lifecycle = churned' have predicted no purchase in the next 90 days?"
tagsmith --project "$DEMO" tags backtest lifecycle_stage --value churned \
  --from 2024-01-01 --to 2024-09-01 --every 60d --outcome no_purchase_90d

step "tagsmith train churn: LightGBM against recency, RFM, logistic regression, BG/NBD and the generator's oracle"
tagsmith --project "$DEMO" train churn --truth "$DEMO/raw/truth.csv"

step "tagsmith train value: Tweedie LightGBM against the same baselines (BG/NBD + Gamma-Gamma) and the oracle"
tagsmith --project "$DEMO" train value --truth "$DEMO/raw/truth.csv"

# A rejected candidate exits 1 and changes nothing; the demo then goes on without it.
step "tagsmith models promote: re-score challengers on the latest labelled window; champion only if the gates pass"
tagsmith --project "$DEMO" models promote churn-predictor --role admin || echo "churn-predictor: gates refused the challenger"
tagsmith --project "$DEMO" models promote value-predictor --role admin || echo "value-predictor: gates refused the challenger"

step "tagsmith models contest churn_risk: rule tags vs baselines vs the model, same labels, same metrics"
tagsmith --project "$DEMO" models contest churn_risk

step "tagsmith tags run: features -> rule tags -> predicted tags -> one snapshot, as of two dates"
tagsmith --project "$DEMO" tags run --role admin --as-of 2024-10-01
tagsmith --project "$DEMO" tags run --role admin

step "tagsmith tags report: coverage vs the previous run, flags, HTML with charts"
tagsmith --project "$DEMO" tags report --out "$DEMO/reports/tags.html"

step "tagsmith tags diff: who entered and left each lifecycle stage"
tagsmith --project "$DEMO" tags diff --from 2024-10-01 --to 2025-01-01 --tag lifecycle_stage

step "tagsmith audience: important-value customers who are active or dormant, saved as 'vip'"
tagsmith --project "$DEMO" audience select \
  "rfm_segment = 'important_value' and lifecycle_stage in ('active', 'dormant')" \
  --out "$DEMO/audiences/vip.csv" --save vip

step "tagsmith triggers: sync the 'vip' audience to a file drop (the full list now, then only changes)"
tagsmith --project "$DEMO" triggers add vip-list --audience vip --drop exports --include rfm_segment
tagsmith --project "$DEMO" triggers apply --role admin
tagsmith --project "$DEMO" triggers run --until idle --max-seconds 60
ls "$DEMO/exports/vip-list"

step "tagsmith audit verify: every read above is in the hash-chained audit log"
tagsmith --project "$DEMO" audit verify --role admin

step "tagsmith serve: start the tag service, ask it for two customers' tags, stop it"
KEY=$(tagsmith --project "$DEMO" serve keys add demo-crm --role marketing)
PORT=${TAGSMITH_DEMO_PORT:-3917}
# Own session (process group), so stopping it by PID also stops BentoML's workers.
setsid tagsmith --project "$DEMO" serve --port "$PORT" >"$DEMO/serve.log" 2>&1 &
SERVE_PID=$!
stop_service() { kill -TERM -- "-$SERVE_PID" 2>/dev/null || true; wait "$SERVE_PID" 2>/dev/null || true; }
trap stop_service EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 "$SERVE_PID" 2>/dev/null || { cat "$DEMO/serve.log"; exit 1; }
  sleep 1
done
CUSTOMER=$(sed -n 2p "$DEMO/raw/customers.csv" | cut -d, -f1 | tr -d '"')
curl -sS --fail-with-body -X POST "http://127.0.0.1:$PORT/tags" \
  -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
  -d "{\"customer_ids\": [\"$CUSTOMER\", \"no-such-customer\"]}" | python3 -m json.tool
stop_service
trap - EXIT
