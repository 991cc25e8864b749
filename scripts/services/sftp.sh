# sftp: OpenSSH's sshd from Debian (package openssh-server, unpacked with `apt-get download` +
# `dpkg-deb -x`, never installed: installing it would start a system sshd on port 22), serving
# `internal-sftp` on loopback with a generated host key and a generated user key. No root: sshd runs
# as the invoking user, or as `nobody` when invoked as root (sshd as root needs a privilege-separation
# user the unpacked package does not create). Sourced by scripts/services.sh;
# defines start_sftp, stop_sftp, env_sftp.
#
# Settings: SFTP_ADDRESS (host:port), SFTP_USER, SFTP_KEY_FILE (the user's OpenSSH private key),
# SFTP_DIR (a directory the user can write, for the tests' files) and SFTP_SSHD (a script starting
# another sshd with the same keys in the foreground; extra arguments such as `-p PORT` are passed on,
# so a test can run and restart a server of its own).
# ---- sftp -------------------------------------------------------------------------------------
SFTP_PORT="${SLUICE_SFTP_PORT:-12222}"

sftp_sshd_bin() {
  local root="$CACHE/openssh-server" bin
  bin="$root/usr/sbin/sshd"
  if [[ ! -x "$bin" ]]; then
    log "unpacking sshd (Debian openssh-server)"
    local tmp; tmp="$(mktemp -d)"
    chmod 755 "$tmp"
    # apt downloads as the _apt user when it can write the directory, else as root with a warning.
    (cd "$tmp" && apt-get download openssh-server >&2) || {
      log "apt-get download openssh-server failed (run apt-get update?)"; rm -rf "$tmp"; exit 1;
    }
    mkdir -p "$root"
    dpkg-deb -x "$tmp"/openssh-server_*.deb "$root"
    rm -rf "$tmp"
  fi
  echo "$bin"
}

# The user sshd runs as and its files live for: the invoking user, or nobody under root.
sftp_user() {
  if [[ "$(id -u)" == 0 ]]; then echo nobody; else id -un; fi
}

# Runtime files sit outside the repository when sshd drops to nobody, which must be able to reach
# them (a clone under a private home directory would not be).
sftp_dir() {
  if [[ "$(id -u)" == 0 ]]; then echo "/tmp/sluice-sftp-$SFTP_PORT"; else echo "$STATE/sftp"; fi
}

env_sftp() {
  local dir; dir="$(sftp_dir)"
  echo "SFTP_ADDRESS=127.0.0.1:$SFTP_PORT"
  echo "SFTP_USER=$(sftp_user)"
  echo "SFTP_KEY_FILE=$dir/user_key"
  echo "SFTP_DIR=$dir/files"
  echo "SFTP_SSHD=$dir/run-sshd"
}

start_sftp() {
  local dir bin user
  dir="$(sftp_dir)"; bin="$(sftp_sshd_bin)"; user="$(sftp_user)"
  mkdir -p "$dir/files"
  if running "$dir/pid"; then
    log "sftp already running (pid $(cat "$dir/pid"))"
  else
    [[ -f "$dir/host_key" ]] || ssh-keygen -q -t ed25519 -N '' -C sluice-sftp-host -f "$dir/host_key" >&2
    [[ -f "$dir/user_key" ]] || ssh-keygen -q -t ed25519 -N '' -C sluice-sftp-user -f "$dir/user_key" >&2
    cp "$dir/user_key.pub" "$dir/authorized_keys"
    cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $SFTP_PORT
HostKey $dir/host_key
PidFile none
AuthorizedKeysFile $dir/authorized_keys
AllowUsers $user
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# Without PAM, sshd refuses accounts whose password field is locked (as nobody's is); PAM's account
# check (Debian's /etc/pam.d/other, as the unpacked package brings no sshd file) accepts a key login.
UsePAM yes
StrictModes no
PermitRootLogin no
AllowTcpForwarding no
X11Forwarding no
Subsystem sftp internal-sftp
ForceCommand internal-sftp
LogLevel INFO
CONF
    # The foreground command, as root dropped to nobody; "$@" takes e.g. -p PORT for a test's own.
    if [[ "$(id -u)" == 0 ]]; then
      printf '#!/bin/sh\nexec setpriv --reuid=nobody --regid=nogroup --clear-groups %s -D -e -f %s "$@"\n' \
        "$bin" "$dir/sshd_config" >"$dir/run-sshd"
      chown -R nobody:nogroup "$dir"
      chmod 0777 "$dir/files"
    else
      printf '#!/bin/sh\nexec %s -D -e -f %s "$@"\n' "$bin" "$dir/sshd_config" >"$dir/run-sshd"
    fi
    chmod 755 "$dir/run-sshd"
    chmod 600 "$dir/host_key" "$dir/user_key"
    log "starting sshd (internal-sftp) on 127.0.0.1:$SFTP_PORT as $user"
    nohup "$dir/run-sshd" >"$dir/server.log" 2>&1 &
    echo $! >"$dir/pid"
    if ! wait_port 127.0.0.1 "$SFTP_PORT" 30; then
      log "sshd did not start; its log:"; tail -20 "$dir/server.log" >&2; exit 1
    fi
  fi
  env_sftp
}

stop_sftp() {
  local dir; dir="$(sftp_dir)"
  if running "$dir/pid"; then
    kill "$(cat "$dir/pid")" && log "stopped sftp"
  fi
  rm -f "$dir/pid"
}
