#!/usr/bin/env bash
# Turn a fresh Debian/Ubuntu VM into the class's JupyterHub. Run as root from a clone of the
# course:   sudo deploy/vm/setup.sh --accounts accounts.csv --https-cert C --https-key K
# Idempotent: a second run changes nothing that is in place and restarts the hub only when its
# configuration changed. See deploy/vm/README.md.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: setup.sh --accounts FILE.csv [options]

  --accounts FILE      CSV with columns username,role (role: learner | grader | instructor);
                       one instructor; accounts are created, never root
  --https-cert FILE    TLS certificate (PEM) for the hub's own HTTPS (port 443)
  --https-key FILE     its private key
  --http               plain HTTP on --port (only behind a proxy that terminates HTTPS)
  --ip ADDR            listen address (default 0.0.0.0)
  --port N             listen port (default 443, or 80 with --http)
  --prefix DIR         software: venv, course copy, proxy (default /opt/cv-workshop)
  --state DIR          hub database, secrets, nbgrader exchange (default /srv/cv-workshop)
  --packages-from VENV reuse the Python packages of an existing venv of this course (tests)
  --no-systemd         do not install or restart the systemd unit (it is still written)
EOF
}

REPO="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX=/opt/cv-workshop
STATE=/srv/cv-workshop
ACCOUNTS=""
CERT="" KEY="" HTTP=0 IP=0.0.0.0 PORT="" PACKAGES_FROM="" SYSTEMD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --accounts) ACCOUNTS="$2"; shift 2 ;;
    --https-cert) CERT="$2"; shift 2 ;;
    --https-key) KEY="$2"; shift 2 ;;
    --http) HTTP=1; shift ;;
    --ip) IP="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --prefix) PREFIX="$2"; shift 2 ;;
    --state) STATE="$2"; shift 2 ;;
    --packages-from) PACKAGES_FROM="$2"; shift 2 ;;
    --no-systemd) SYSTEMD=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "setup.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

say() { printf '%s\n' "setup: $*"; }
die() { printf '%s\n' "setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it creates accounts and a system service)"
[ -n "$ACCOUNTS" ] || [ -f "$STATE/accounts.csv" ] || die "--accounts FILE.csv is required on the first run"
if [ "$HTTP" = 0 ] && { [ -z "$CERT" ] || [ -z "$KEY" ]; }; then
  [ -f "$STATE/hub.env" ] && grep -q '^CVW_SSL_CERT=.' "$STATE/hub.env" \
    || grep -q '^CVW_ALLOW_HTTP=1' "$STATE/hub.env" 2>/dev/null \
    || die "give --https-cert and --https-key (or --http behind an HTTPS proxy)"
fi
PORT="${PORT:-$([ "$HTTP" = 1 ] && echo 80 || echo 443)}"
CHANGED=0

# -- 1. system packages ----------------------------------------------------------------------
need=()
command -v python3 >/dev/null || need+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
command -v npm >/dev/null || need+=(nodejs npm)
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# -- 2. the course, world-readable, without its solutions -------------------------------------
# this clone's answers are root's alone (learners log in to this machine)
for private in "$REPO/solutions" "$REPO/nbgrader"; do
  [ -d "$private" ] && [ "$(stat -c %a "$private")" != 700 ] && chmod 0700 "$private" \
    && say "$private: made readable by root only"
done
install -d -m 0755 "$PREFIX" "$PREFIX/course" "$PREFIX/jupyter"
sync_dir() {  # copy $1 to $2 if it differs (rsync-free: tar + cmp)
  local src="$1" dst="$2" tmp
  tmp="$(mktemp -d)"
  tar -C "$src" --exclude=solutions --exclude=.git --exclude=.venv --exclude=nbgrader \
      --exclude=results --exclude=checkpoints --exclude='__pycache__' --exclude=.pytest_cache \
      --exclude=test-artifacts --exclude=.ipynb_checkpoints -cf - . | tar -C "$tmp" -xf -
  if ! diff -rq "$tmp" "$dst" >/dev/null 2>&1; then
    rm -rf "$dst" && mv "$tmp" "$dst" && chmod -R a+rX "$dst" && CHANGED=1
    say "course copied to $dst"
  else
    rm -rf "$tmp"
  fi
}
sync_dir "$REPO" "$PREFIX/course"
for role in learner instructor; do
  sync_dir "$REPO/deploy/jupyter/$role" "$PREFIX/jupyter/$role"
done

# -- 3. Python: a venv in a world-readable system path ---------------------------------------
PY="$PREFIX/venv/bin/python"
if [ ! -x "$PY" ]; then
  say "creating $PREFIX/venv"
  /usr/bin/python3 -m venv "$PREFIX/venv"
  CHANGED=1
fi
REQ_HASH="$(cat "$REPO/requirements.txt" "$REPO/requirements-deploy.txt" "$REPO/pyproject.toml" \
            | sha256sum | cut -c1-16)"
if [ ! -f "$PREFIX/venv/.installed-$REQ_HASH" ]; then
  if [ -n "$PACKAGES_FROM" ]; then
    site="$("$PACKAGES_FROM/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    mine="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    printf '%s\n' "$site" > "$mine/course-packages.pth"
    # and the data and settings those packages installed (JupyterLab's, nbgrader's)
    install -d -m 0755 "$PREFIX/venv/share" "$PREFIX/venv/etc"
    ln -sfn "$PACKAGES_FROM/share/jupyter" "$PREFIX/venv/share/jupyter"
    cp -a "$PACKAGES_FROM/etc/jupyter" "$PREFIX/venv/etc/"
    for script in "$PACKAGES_FROM"/bin/*; do   # their commands (alembic, nbgrader, ...)
      case "$(basename "$script")" in python*|activate*|pip*) continue ;; esac
      head -c 2 "$script" | grep -q '#!' && head -1 "$script" | grep -q python || continue
      { echo "#!$PY"; tail -n +2 "$script"; } > "$PREFIX/venv/bin/$(basename "$script")"
      chmod 0755 "$PREFIX/venv/bin/$(basename "$script")"
    done
    say "reusing the packages of $PACKAGES_FROM"
  else
    say "installing the course's pinned requirements"
    "$PY" -m pip install --quiet --upgrade pip
    "$PY" -m pip install --quiet -r "$REPO/requirements.txt" -r "$REPO/requirements-deploy.txt"
    "$PY" -m pip install --quiet --no-deps "$PREFIX/course"
  fi
  rm -f "$PREFIX"/venv/.installed-* && touch "$PREFIX/venv/.installed-$REQ_HASH"
  CHANGED=1
fi
chmod -R a+rX "$PREFIX/venv"
# the course package, from the world-readable copy (after the reused packages on sys.path)
mine="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
if [ "$(cat "$mine/zz-cv-workshop.pth" 2>/dev/null)" != "$PREFIX/course" ]; then
  printf '%s\n' "$PREFIX/course" > "$mine/zz-cv-workshop.pth"
fi
"$PY" -c 'import jupyterhub, nbgrader, workshop' || die "the venv is missing the hub, nbgrader or the course"

# -- 4. the proxy (configurable-http-proxy, pinned) -------------------------------------------
CHP_VERSION=5.3.0
if [ "$("$PREFIX/proxy/node_modules/.bin/configurable-http-proxy" --version 2>/dev/null)" != "$CHP_VERSION" ]; then
  say "installing configurable-http-proxy $CHP_VERSION"
  install -d -m 0755 "$PREFIX/proxy"
  npm install --silent --no-audit --no-fund --prefix "$PREFIX/proxy" "configurable-http-proxy@$CHP_VERSION"
  CHANGED=1
fi

# -- 5. accounts ---------------------------------------------------------------------------
install -d -m 0711 "$STATE"
if [ -n "$ACCOUNTS" ] && ! cmp -s "$ACCOUNTS" "$STATE/accounts.csv"; then
  install -m 0644 "$ACCOUNTS" "$STATE/accounts.csv"
  CHANGED=1
fi
INSTRUCTOR=""
while IFS=, read -r user role _rest; do
  user="${user//[[:space:]]/}" role="${role//[[:space:]]/}"
  [ -z "$user" ] || [ "$user" = username ] && continue
  case "$user" in root|*[!a-z0-9_-]*) die "accounts: $user is not an allowed username" ;; esac
  case "$role" in learner|grader|instructor) ;; *) die "accounts: $user has role $role" ;; esac
  [ "$role" = instructor ] && INSTRUCTOR="$user"
  if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$user"
    say "account $user ($role) created"
  fi
  chmod 0700 "$(getent passwd "$user" | cut -d: -f6)"   # nobody reads another's work
done < "$STATE/accounts.csv"
[ -n "$INSTRUCTOR" ] || die "accounts: no instructor"

# -- 6. nbgrader: the exchange, the course, its configuration -----------------------------------
install -d -m 0777 "$STATE/exchange"
chmod +t "$STATE/exchange"
HOME_I="$(getent passwd "$INSTRUCTOR" | cut -d: -f6)"
COURSE_ROOT="$HOME_I/cv-workshop"
install -d -m 0700 -o "$INSTRUCTOR" -g "$INSTRUCTOR" "$COURSE_ROOT" "$COURSE_ROOT/source"
for nb in "$REPO"/solutions/*.ipynb; do
  name="$(basename "$nb" .ipynb)"
  dst="$COURSE_ROOT/source/$name/$name.ipynb"
  if ! cmp -s "$nb" "$dst"; then
    install -d -m 0700 -o "$INSTRUCTOR" -g "$INSTRUCTOR" "$COURSE_ROOT/source/$name"
    install -m 0600 -o "$INSTRUCTOR" -g "$INSTRUCTOR" "$nb" "$dst"
    CHANGED=1
  fi
done
cat > "$COURSE_ROOT/nbgrader_config.py.new" <<EOF
# written by deploy/vm/setup.sh: the course's nbgrader settings, with this hub's folders
exec(open("$PREFIX/course/nbgrader_config.py").read())
c.CourseDirectory.root = "$COURSE_ROOT"
c.CourseDirectory.course_id = "cv-workshop"
c.CourseDirectory.db_url = "sqlite:///$COURSE_ROOT/gradebook.db"
c.Exchange.root = "$STATE/exchange"
c.CsvExportPlugin.to = "$COURSE_ROOT/grades.csv"
EOF
if ! cmp -s "$COURSE_ROOT/nbgrader_config.py.new" "$COURSE_ROOT/nbgrader_config.py"; then
  mv "$COURSE_ROOT/nbgrader_config.py.new" "$COURSE_ROOT/nbgrader_config.py"; CHANGED=1
else
  rm "$COURSE_ROOT/nbgrader_config.py.new"
fi
chown "$INSTRUCTOR:$INSTRUCTOR" "$COURSE_ROOT/nbgrader_config.py"
# everyone's nbgrader (learners fetch and submit): the course id and the exchange
install -d -m 0755 "$PREFIX/venv/etc/jupyter"
printf '%s\n' 'c = get_config()  # noqa' 'c.CourseDirectory.course_id = "cv-workshop"' \
  "c.Exchange.root = \"$STATE/exchange\"" > "$PREFIX/venv/etc/jupyter/nbgrader_config.py"

# -- 7. the hub's settings and secrets --------------------------------------------------------
secret() { [ -s "$1" ] || ( umask 077; head -c "$2" /dev/urandom | od -An -tx1 | tr -d ' \n' > "$1" ); }
secret "$STATE/class_password" 6
secret "$STATE/admin_password" 20
{
  echo "CVW_PREFIX=$PREFIX"
  echo "CVW_STATE=$STATE"
  echo "CVW_ACCOUNTS=$STATE/accounts.csv"
  echo "CVW_COURSE_ROOT=$COURSE_ROOT"
  echo "CVW_IP=$IP"
  echo "CVW_PORT=$PORT"
  echo "CVW_CLASS_PASSWORD=$(cat "$STATE/class_password")"
  echo "CVW_ADMIN_PASSWORD=$(cat "$STATE/admin_password")"
  if [ "$HTTP" = 1 ]; then echo "CVW_ALLOW_HTTP=1"; fi
  if [ -n "$CERT" ]; then echo "CVW_SSL_CERT=$CERT"; echo "CVW_SSL_KEY=$KEY"; fi
} > "$STATE/hub.env.new"
if [ -z "$CERT" ] && [ "$HTTP" = 0 ] && [ -f "$STATE/hub.env" ]; then
  grep '^CVW_SSL_\|^CVW_ALLOW_HTTP' "$STATE/hub.env" >> "$STATE/hub.env.new" || true
fi
chmod 0600 "$STATE/hub.env.new"
if cmp -s "$STATE/hub.env.new" "$STATE/hub.env"; then rm "$STATE/hub.env.new"
else mv "$STATE/hub.env.new" "$STATE/hub.env"; CHANGED=1; fi

# -- 8. the service ------------------------------------------------------------------------
UNIT="$STATE/cv-workshop-hub.service"
cat > "$UNIT.new" <<EOF
[Unit]
Description=JupyterHub for the computer-vision workshop
After=network-online.target
Wants=network-online.target

[Service]
User=root
EnvironmentFile=$STATE/hub.env
WorkingDirectory=$STATE
ExecStart=$PY -m jupyterhub --config $PREFIX/course/deploy/vm/jupyterhub_config.py
Restart=on-failure
RestartSec=5

[Install]
WantedBy=multi-user.target
EOF
if cmp -s "$UNIT.new" "$UNIT"; then rm "$UNIT.new"; else mv "$UNIT.new" "$UNIT"; CHANGED=1; fi

if [ "$SYSTEMD" = 1 ] && [ -d /run/systemd/system ]; then
  install -m 0644 "$UNIT" /etc/systemd/system/cv-workshop-hub.service
  systemctl daemon-reload
  systemctl enable --quiet cv-workshop-hub
  if [ "$CHANGED" = 1 ] || ! systemctl is-active --quiet cv-workshop-hub; then
    systemctl restart cv-workshop-hub && say "hub (re)started: systemctl status cv-workshop-hub"
  else
    say "nothing changed; the hub keeps running"
  fi
else
  [ "$CHANGED" = 1 ] && say "configuration written" || say "nothing changed"
  say "no systemd here: start the hub with the unit's command line:"
  say "  set -a; . $STATE/hub.env; set +a; cd $STATE && $PY -m jupyterhub --config $PREFIX/course/deploy/vm/jupyterhub_config.py"
fi
say "class password: $(cat "$STATE/class_password")   instructor ($INSTRUCTOR) password: in $STATE/admin_password"
