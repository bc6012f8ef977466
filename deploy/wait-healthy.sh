#!/bin/sh
# wait-healthy.sh PROJECT [SECONDS]: wait until every container of the compose project
# reports healthy (all of them have a healthcheck); after SECONDS (default 180), show the
# ones that are not, with their last log lines, and fail. Works with any Compose front end,
# since it asks the engine (old docker-compose has no `up --wait`).
set -eu
project=$1
timeout=${2:-180}
deadline=$(( $(date +%s) + timeout ))
while :; do
  states=$(docker ps -a --filter "label=com.docker.compose.project=$project" --format '{{.Names}}	{{.Status}}')
  if [ -n "$states" ] && ! printf '%s\n' "$states" | grep -vq '(healthy)'; then
    printf '%s\n' "$states" | sort | sed 's/^/  /'
    exit 0
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "not healthy after ${timeout}s:" >&2
    printf '%s\n' "$states" | grep -v '(healthy)' | sed 's/^/  /' >&2
    for c in $(printf '%s\n' "$states" | grep -v '(healthy)' | cut -f1); do
      echo "--- docker logs --tail 20 $c" >&2
      docker logs --tail 20 "$c" 2>&1 | sed 's/^/  /' >&2
    done
    exit 1
  fi
  sleep 1
done
