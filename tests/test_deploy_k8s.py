"""Kubernetes for large classes (deploy/k8s/), checked as far as a machine without a cluster,
a registry or a Docker engine allows: the Zero to JupyterHub config.yaml merged over the chart's
defaults validates against the chart's values schema (tests/fixtures/z2jh/, as helm does); the
Dockerfile installs the pinned requirements, copies files that exist and never the solutions;
the start-up copy of the notebooks never overwrites a learner's work."""

import copy
import re
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
Z2JH = Path(__file__).resolve().parent / "fixtures" / "z2jh"


def _merge(base: dict, over: dict) -> dict:
    """helm's merge of user values over the chart's defaults (maps merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@pytest.fixture(scope="module")
def schema():
    return yaml.safe_load((Z2JH / "values.schema.yaml").read_text())


@pytest.fixture(scope="module")
def config():
    return yaml.safe_load((K8S / "config.yaml").read_text())


def test_the_fixture_keeps_its_licence_and_provenance():
    assert "BSD" in (Z2JH / "LICENSE").read_text() or "Redistribution" in (Z2JH / "LICENSE").read_text()
    assert "48ea50e34daddde55d76e30df6ecd47e4abd4d8e" in (Z2JH / "PROVENANCE.md").read_text()


def test_config_merged_over_the_defaults_validates(schema, config):
    defaults = yaml.safe_load((Z2JH / "values.yaml").read_text())
    jsonschema.validate(_merge(defaults, config), schema)


def test_a_broken_config_does_not_validate(schema, config):
    """The check can fail: a misspelt key and a wrong type are refused."""
    defaults = yaml.safe_load((Z2JH / "values.yaml").read_text())
    for broken in ({"singleuser": {"memroy": {"limit": "3G"}}},
                   {"cull": {"timeout": "an hour"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(_merge(_merge(defaults, config), broken), schema)


def _bytes(size: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)([KMGT]?)i?", size).groups()
    return float(number) * 1024 ** "_KMGT".index(unit or "_") if unit else float(number)


def test_resources_fit_a_tensorflow_notebook(config):
    memory = config["singleuser"]["memory"]
    assert _bytes(memory["guarantee"]) >= 1.4 * 1024**3   # a notebook's measured peak
    assert _bytes(memory["limit"]) >= _bytes(memory["guarantee"])
    assert config["cull"]["enabled"] and config["cull"]["timeout"] >= 1800


def test_the_notebooks_are_copied_without_overwriting(config, tmp_path):
    command = config["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"]
    script = command[-1].replace("/opt/course", str(tmp_path / "opt")).replace(
        "/home/jovyan", str(tmp_path / "home"))
    (tmp_path / "opt" / "notebooks").mkdir(parents=True)
    (tmp_path / "opt" / "notebooks" / "03_iou_nms.ipynb").write_text("new release")
    (tmp_path / "opt" / "notebooks" / "04_anchors.ipynb").write_text("new release")
    (tmp_path / "home" / "course").mkdir(parents=True)
    (tmp_path / "home" / "course" / "03_iou_nms.ipynb").write_text("the learner's work")
    subprocess.run(["sh", "-c", script], check=True)
    assert (tmp_path / "home" / "course" / "03_iou_nms.ipynb").read_text() == "the learner's work"
    assert (tmp_path / "home" / "course" / "04_anchors.ipynb").read_text() == "new release"


# == the Dockerfile, without building it =======================================================
def _instructions():
    text = (K8S / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_the_base_image_is_pinned():
    base = next(arg for op, arg in _instructions() if op == "FROM")
    name, _, tag = base.partition(":")
    assert tag and tag != "latest" and re.search(r"\d+\.\d+\.\d+", tag), base


def test_the_image_installs_the_pinned_requirements():
    runs = " ".join(arg for op, arg in _instructions() if op == "RUN")
    assert "pip install -r requirements.txt" in runs
    deploy = _pins(ROOT / "requirements-deploy.txt")
    course = _pins(ROOT / "requirements.txt")
    for name, version in re.findall(r"([A-Za-z0-9_.-]+)==([\w.]+)", runs):
        assert (deploy | course).get(name.lower()) == version, f"{name}=={version} is not the pin"
    assert "nbgrader" in course and "jupyterhub" in deploy and "nbgitpuller" in deploy
    assert re.search(r"jupyterhub==", runs) and re.search(r"nbgitpuller==", runs)


def test_the_files_copied_exist_and_are_not_the_solutions():
    ignored = [ln.strip().rstrip("/") for ln in (ROOT / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")]
    assert "solutions" in ignored
    for op, arg in _instructions():
        if op != "COPY":
            continue
        sources = arg.split()[:-1]
        for src in sources:
            assert not src.startswith("--"), "COPY --from/--chown: check by hand"
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the repository"
            assert "solution" not in src
    notebooks = list((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks and all("BEGIN SOLUTION" not in nb.read_text() for nb in notebooks)


def test_the_formgrader_service_matches_the_hub(config):
    docs = list(yaml.safe_load_all((K8S / "formgrader.yaml").read_text()))
    kinds = {d["kind"] for d in docs}
    assert kinds == {"Secret", "Deployment", "Service"}
    service = config["hub"]["services"]["formgrader"]
    assert service["url"] == "http://formgrader:9999"
    secret = next(d for d in docs if d["kind"] == "Secret")
    assert secret["stringData"]["token"] == service["apiToken"]
    roles = config["hub"]["loadRoles"]
    assert any("access:services!service=formgrader" in s for r in roles.values()
               for s in r["scopes"])


def test_learners_get_the_learner_settings_and_staff_the_instructors(config):
    """The image's Jupyter settings are the learners' (no instructor tools, notebooks that open
    unchanged); the hub's extraConfig hands the formgrader's group the instructor's."""
    from types import SimpleNamespace

    env = dict(op_arg.split("=", 1) for op, arg in _instructions() if op == "ENV"
               for op_arg in arg.split())
    learner = env["JUPYTER_CONFIG_PATH"]
    copies = [arg.split() for op, arg in _instructions() if op == "COPY"]
    assert ["deploy/jupyter/", "deploy/jupyter/"] in copies
    assert learner == "/opt/course/deploy/jupyter/learner"
    assert (ROOT / "deploy" / "jupyter" / "learner" / "jupyter_server_config.json").exists()

    c = SimpleNamespace(KubeSpawner=SimpleNamespace(environment={"TF_CPP_MIN_LOG_LEVEL": "3"}))
    exec(config["hub"]["extraConfig"]["settings"], {"c": c})  # noqa: S102
    pick = c.KubeSpawner.environment["JUPYTER_CONFIG_PATH"]
    assert c.KubeSpawner.environment["TF_CPP_MIN_LOG_LEVEL"] == "3"

    def spawner(*groups):
        return SimpleNamespace(user=SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups]))

    assert pick(spawner()) == learner
    assert pick(spawner("formgrade-cv-workshop")) == "/opt/course/deploy/jupyter/instructor"
    assert (ROOT / "deploy" / "jupyter" / "instructor").is_dir()
