"""JupyterHub for a class of the workshop on one VM (deploy/vm/setup.sh writes its settings).

Every setting comes from the environment (``/srv/cv-workshop/hub.env``, read by the systemd
unit), so the same file serves the class VM and the tests on 127.0.0.1:

  CVW_PREFIX          /opt/cv-workshop: venv/, course/ (the learner notebooks), jupyter/, proxy/
  CVW_STATE           /srv/cv-workshop: the hub's database, secrets, the nbgrader exchange
  CVW_ACCOUNTS        the accounts CSV (username,role with role learner|grader|instructor)
  CVW_COURSE_ROOT     the instructor's nbgrader course folder (source/, gradebook, ...)
  CVW_CLASS_PASSWORD  the one password learners and graders log in with
  CVW_ADMIN_PASSWORD  the instructor's password (32+ characters)
  CVW_IP, CVW_PORT    where the hub listens (default 0.0.0.0:443)
  CVW_SSL_CERT, CVW_SSL_KEY   HTTPS with the hub's own TLS; or CVW_ALLOW_HTTP=1 behind a proxy
                              that terminates TLS (plain HTTP only when asked for explicitly)
"""

import csv
import os
import pwd
import shutil
from pathlib import Path

c = get_config()  # noqa: F821  (provided by JupyterHub)

PREFIX = Path(os.environ.get("CVW_PREFIX", "/opt/cv-workshop"))
STATE = Path(os.environ.get("CVW_STATE", "/srv/cv-workshop"))
PYTHON = str(PREFIX / "venv" / "bin" / "python")
COURSE_ID = "cv-workshop"
COURSE_ROOT = os.environ.get("CVW_COURSE_ROOT", "")
FORMGRADER_PORT = int(os.environ.get("CVW_FORMGRADER_PORT", "9999"))


def _accounts() -> dict[str, str]:
    """username -> role, from the accounts CSV (no account is root)."""
    roles = {}
    path = os.environ.get("CVW_ACCOUNTS", str(STATE / "accounts.csv"))
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            name, role = row["username"].strip(), row["role"].strip()
            if name and name != "root":
                roles[name] = role
    return roles


ACCOUNTS = _accounts()
INSTRUCTORS = sorted(u for u, r in ACCOUNTS.items() if r == "instructor")
GRADERS = sorted(u for u, r in ACCOUNTS.items() if r == "grader")
LEARNERS = sorted(u for u, r in ACCOUNTS.items() if r == "learner")

# -- where the hub listens, and how ---------------------------------------------------------
c.JupyterHub.ip = os.environ.get("CVW_IP", "0.0.0.0")
c.JupyterHub.port = int(os.environ.get("CVW_PORT", "443"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("CVW_HUB_PORT", "8081"))
if os.environ.get("CVW_SSL_CERT") and os.environ.get("CVW_SSL_KEY"):
    c.JupyterHub.ssl_cert = os.environ["CVW_SSL_CERT"]
    c.JupyterHub.ssl_key = os.environ["CVW_SSL_KEY"]
elif os.environ.get("CVW_ALLOW_HTTP") != "1":
    raise SystemExit("no certificate (CVW_SSL_CERT, CVW_SSL_KEY): refusing plain HTTP; set "
                     "CVW_ALLOW_HTTP=1 only behind a proxy that terminates HTTPS, or for a test")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.ConfigurableHTTPProxy.command = [str(PREFIX / "proxy" / "node_modules" / ".bin" /
                                       "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('CVW_PROXY_API_PORT', '8001')}"
c.JupyterHub.cleanup_servers = True

# -- who may log in -------------------------------------------------------------------------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["CVW_CLASS_PASSWORD"]
c.SharedPasswordAuthenticator.admin_password = os.environ["CVW_ADMIN_PASSWORD"]
c.Authenticator.allowed_users = set(LEARNERS) | set(GRADERS)
c.Authenticator.admin_users = set(INSTRUCTORS)

# -- servers: one process per learner, as their own Unix account ----------------------------
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [PYTHON, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab/tree/course"
c.Spawner.notebook_dir = "~"
# 30 learners logging in at once on a small VM: generous start-up, a bounded stampede
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 180
c.JupyterHub.concurrent_spawn_limit = 40
c.JupyterHub.init_spawners_timeout = 60
c.Spawner.mem_limit = os.environ.get("CVW_MEM_LIMIT", "3G")  # informational (MEM_LIMIT env)


def _jupyter_config(username: str) -> str:
    role = ACCOUNTS.get(username, "learner")
    return str(PREFIX / "jupyter" / ("instructor" if role in ("instructor", "grader") else "learner"))


def _environment(spawner) -> dict:
    return {"JUPYTER_CONFIG_PATH": _jupyter_config(spawner.user.name),
            "PATH": f"{PREFIX / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
            "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "0",
            "CUDA_VISIBLE_DEVICES": ""}


c.Spawner.environment = {"CVW_ROLE": lambda spawner: ACCOUNTS.get(spawner.user.name, "learner")}


def pre_spawn(spawner) -> None:
    """The learner notebooks into ~/course on first spawn; a learner's own files are never
    overwritten (a later release only adds the notebooks they do not have yet)."""
    spawner.environment.update(_environment(spawner))
    user = pwd.getpwnam(spawner.user.name)
    target = Path(user.pw_dir) / "course"
    source = PREFIX / "course" / "notebooks"
    target.mkdir(mode=0o755, exist_ok=True)
    os.chown(target, user.pw_uid, user.pw_gid)
    for notebook in sorted(source.glob("*.ipynb")):
        dest = target / notebook.name
        if not dest.exists():
            shutil.copyfile(notebook, dest)
            os.chown(dest, user.pw_uid, user.pw_gid)


c.Spawner.pre_spawn_hook = pre_spawn

# -- nbgrader: groups, roles, the formgrader as a service, the idle culler ---------------------
c.JupyterHub.load_groups = {
    f"formgrade-{COURSE_ID}": {"users": INSTRUCTORS + GRADERS},
    f"nbgrader-{COURSE_ID}": {"users": LEARNERS},
}
c.JupyterHub.load_roles = [
    {"name": "formgrader-users", "groups": [f"formgrade-{COURSE_ID}"],
     "scopes": ["access:services!service=formgrader"]},
    {"name": "idle-culler", "services": ["idle-culler"],
     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"]},
]
c.JupyterHub.services = [
    {"name": "idle-culler",
     "command": [PYTHON, "-m", "jupyterhub_idle_culler", "--timeout=3600", "--cull-every=300"]},
]
if COURSE_ROOT and INSTRUCTORS:
    c.JupyterHub.services.append({
        "name": "formgrader", "user": INSTRUCTORS[0], "cwd": COURSE_ROOT,
        "url": f"http://127.0.0.1:{FORMGRADER_PORT}",
        "command": [PYTHON, "-m", "jupyterhub.singleuser", f"--port={FORMGRADER_PORT}",
                    f"--ServerApp.root_dir={COURSE_ROOT}"],
        "environment": {"JUPYTER_CONFIG_PATH": str(PREFIX / "jupyter" / "instructor"),
                        "PATH": f"{PREFIX / 'venv' / 'bin'}:/usr/local/bin:/usr/bin:/bin",
                        "TF_CPP_MIN_LOG_LEVEL": "3"},
        "oauth_no_confirm": True,
    })
