#!/usr/bin/env bash
# make run: Kafka, PostgreSQL, every service, demo data; returns once all is ready. Safe to repeat.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SERVICES_DIR="$TOUCHLINE_RUN_DIR/services"
KEYS_FILE="$TOUCHLINE_RUN_DIR/api-keys.json"
LOCAL_KEYS='{"dev-web": {"source": "demo-web", "scopes": ["events:write"]},
  "dev-crm": {"source": "demo-crm", "scopes": ["timeline:read", "consent:read"]},
  "dev-mkt": {"source": "demo-marketing", "scopes": ["segments:admin", "segments:read"]},
  "dev-dpo": {"source": "demo-dpo", "scopes": ["consent:write", "consent:read"]},
  "dev-admin": {"source": "demo-admin", "scopes": ["events:write", "timeline:read", "segments:admin",
                "segments:read", "consent:write", "consent:read", "identities:admin"]}}'

api_keys() {
  if [[ -n "${TOUCHLINE_API_KEYS:-}" ]]; then
    echo "$TOUCHLINE_API_KEYS"
  else
    [[ -f "$KEYS_FILE" ]] || echo "$LOCAL_KEYS" >"$KEYS_FILE"
    cat "$KEYS_FILE"
  fi
}

load_demo_once() {
  local marker="$TOUCHLINE_RUN_DIR/demo-loaded" status=0
  [[ -f "$marker" ]] && { log "demo data already loaded"; return 0; }
  # Each API gets a key of its own scope; without one for some scope the demo says so and is skipped.
  "$PYTHON" -m shared demo --url "http://127.0.0.1:$TOUCHLINE_INGEST_PORT" \
    --consent-url "http://127.0.0.1:$TOUCHLINE_CONSENT_PORT" --segments-url "http://127.0.0.1:$TOUCHLINE_SEGMENTS_PORT" \
    --customers "${TOUCHLINE_DEMO_CUSTOMERS:-200}" || status=$?
  case $status in
    0) touch "$marker" ;;
    3) log "no demo data loaded (see above); every service runs without it" ;;
    *) die "loading the demo data failed" ;;
  esac
}

# A key holding $1, or a placeholder that says which scope the command needs.
key_for() {
  (cd "$TOUCHLINE_ROOT" && "$PYTHON" -m shared key "$1") || echo "<a key with $1>"
}

main() {
  [[ -x "$PYTHON" ]] || die "no virtualenv at .venv; run 'make run', which creates it"
  mkdir -p "$SERVICES_DIR"
  infra_start
  bash "$TOUCHLINE_ROOT/deploy/local/postgres.sh" createdb touchline
  TOUCHLINE_API_KEYS="$(api_keys)"
  export TOUCHLINE_API_KEYS
  (cd "$TOUCHLINE_ROOT" && "$PYTHON" -m shared migrate && "$PYTHON" -m shared topics)
  bash "$TOUCHLINE_ROOT/deploy/local/supervise.sh" start
  bash "$TOUCHLINE_ROOT/deploy/local/prometheus.sh" start
  load_demo_once
  cat <<TXT

Touchline is running.
  Console        http://127.0.0.1:$TOUCHLINE_CONSOLE_PORT   (sign in with dev-admin, find cust-00001@example.com)
  Ingest API     http://127.0.0.1:$TOUCHLINE_INGEST_PORT/docs   (metrics: /metrics)
  Timeline API   http://127.0.0.1:$TOUCHLINE_TIMELINE_PORT/docs
  Consent API    http://127.0.0.1:$TOUCHLINE_CONSENT_PORT/docs
  Identity API   http://127.0.0.1:$TOUCHLINE_IDENTITY_PORT/docs
  Segments API   http://127.0.0.1:$TOUCHLINE_SEGMENTS_PORT/docs
  Prometheus     http://127.0.0.1:$TOUCHLINE_PROMETHEUS_PORT   (every process a target; alerts: /alerts)
  Kafka          127.0.0.1:$TOUCHLINE_KAFKA_PORT
  PostgreSQL     $TOUCHLINE_PG_DSN
  Logs           $SERVICES_DIR   (make status: every process, its state and restarts)
  API keys       (local development only; set TOUCHLINE_API_KEYS to use your own)
$("$PYTHON" -c 'import json,sys
for key, grant in json.load(sys.stdin).items():
    scopes = grant["scopes"] if isinstance(grant, dict) else grant
    print("    %-12s %s" % (key, " ".join(scopes)))' <<<"$TOUCHLINE_API_KEYS")
  Try: curl -s -H 'Authorization: Bearer $(key_for events:write)' -H 'Content-Type: application/json' \\
         -d '[{"event_id":"try-1","customer_id":"cust-00001","type":"page.viewed","channel":"web",
              "occurred_at":"$(date -u +%Y-%m-%dT%H:%M:%SZ)"}]' http://127.0.0.1:$TOUCHLINE_INGEST_PORT/v1/events
  Then:  curl -s -H 'Authorization: Bearer $(key_for timeline:read)' http://127.0.0.1:$TOUCHLINE_TIMELINE_PORT/v1/customers/cust-00001/profile
  Segments: curl -s -H 'Authorization: Bearer $(key_for segments:read)' http://127.0.0.1:$TOUCHLINE_SEGMENTS_PORT/v1/segments/repeat-buyers/stats
  Live changes of one segment: .venv/bin/python -m services.segments tail repeat-buyers
Stop everything with: make stop
TXT
}

main
