# s3: moto server (PyPI `moto[server]`) speaking S3, SQS and SNS on loopback. Sourced by
# scripts/services.sh; defines start_s3, stop_s3, env_s3. The install is a virtualenv under the cache,
# versioned, so a warm start is only "is the pid alive / start the server and wait for its port".
# boto3 comes with moto, so tests use "$S3_PYTHON" (this venv's python) to upload like `aws s3 cp`.
S3_MOTO_VERSION=5.2.5
S3_PORT="${SLUICE_S3_PORT:-15000}"

s3_venv() {
  local venv="$CACHE/moto-$S3_MOTO_VERSION"
  if [[ ! -x "$venv/bin/moto_server" ]] || ! "$venv/bin/python" -c "import moto, boto3" 2>/dev/null; then
    log "installing moto[server] $S3_MOTO_VERSION (PyPI) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "moto[server]==$S3_MOTO_VERSION" >&2
  fi
  echo "$venv"
}

env_s3() {
  local venv; venv="$(s3_venv)"
  echo "S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
  echo "S3_PYTHON=$venv/bin/python"
  echo "AWS_REGION=us-east-1"
  # moto accepts any credentials; these are dummies so SigV4 has something to sign with.
  echo "AWS_ACCESS_KEY_ID=testing"
  echo "AWS_SECRET_ACCESS_KEY=testing"
}

start_s3() {
  local dir="$STATE/s3" venv
  venv="$(s3_venv)"
  mkdir -p "$dir"
  if running "$dir/pid"; then
    log "moto already running (pid $(cat "$dir/pid"))"
  else
    log "starting moto_server on 127.0.0.1:$S3_PORT"
    nohup "$venv/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! wait_port 127.0.0.1 "$S3_PORT" 60; then
      log "moto_server did not start; its log:"; tail -20 "$dir/server.log" >&2; exit 1
    fi
    # The port opens before the app is ready to answer on some hosts: wait for a real HTTP answer.
    local deadline=$((SECONDS + 30))
    until "$venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:$S3_PORT/moto-api/', timeout=2)" 2>/dev/null; do
      if ((SECONDS >= deadline)); then log "moto_server does not answer HTTP"; exit 1; fi
      sleep 0.2
    done
  fi
  env_s3
}

stop_s3() {
  local dir="$STATE/s3"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped moto"
  fi
  rm -f "$dir/pid"
}
