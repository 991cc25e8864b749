# smtp: Python's aiosmtpd (PyPI), a real SMTP server the email trigger's tests start per test (each
# with its own port, credentials and mailbox). Sourced by scripts/services.sh; defines start_smtp,
# stop_smtp, env_smtp. "start" installs it into a virtualenv under the cache and prints the Python
# that has it.
SMTP_AIOSMTPD_VERSION=1.4.6

smtp_python() {
  local venv="$CACHE/aiosmtpd-$SMTP_AIOSMTPD_VERSION"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
    log "installing aiosmtpd $SMTP_AIOSMTPD_VERSION (PyPI) into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet "aiosmtpd==$SMTP_AIOSMTPD_VERSION" >&2
  fi
  echo "$venv/bin/python"
}

env_smtp() {
  echo "SMTP_PYTHON=$(smtp_python)"
}

start_smtp() {
  env_smtp
}

stop_smtp() {
  :
}
