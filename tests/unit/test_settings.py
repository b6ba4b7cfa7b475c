"""core/settings.py: defaults, environment overrides, masking, and that it is the only reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import wheelforge.build
from wheelforge import cli
from wheelforge.build import build_wheels, say_settings
from wheelforge.core import settings, wheelset
from wheelforge.core.terminal import UserError

PACKAGE = settings.ROOT / "wheelforge"
DOCS = settings.ROOT / "docs" / "settings.md"


def test_paths_hang_off_the_repository_root():
    assert (settings.ROOT / "tasks.py").is_file() and (settings.ROOT / "wheelforge").is_dir()
    assert settings.CACHE == settings.ROOT / ".cache"
    for path in (settings.SOURCES, settings.EXPORTS, settings.CONTRACT, settings.ENGINE_STATE,
                 settings.BASE_IMAGES, settings.DEMO_GIT, settings.SMOKE_REPORTS,
                 settings.AUDIT_CACHE, settings.VENDOR_WHEELS, settings.LAST_PULLED,
                 settings.WHEELS_LOCK, settings.ENGINES):
        assert path.parent == settings.CACHE, path
    assert settings.DEMO_RECIPES.is_dir() and settings.RECIPES.is_dir()


def test_defaults_with_an_empty_environment():
    s = settings.current({})
    assert s.wheels == settings.ROOT / "wheels"
    assert (s.git_rewrites, s.pip_index_url, s.index_url, s.debian_mirror, s.max_jobs) == (
        (), None, None, None, None)
    assert (s.progress, s.heartbeat_seconds, s.docker) == ("auto", "10", "docker")
    assert s.from_env == frozenset()
    assert all(line.endswith("(default)") for line in s.lines())


def test_the_environment_overrides_and_blank_counts_as_unset(tmp_path: Path):
    env = {"WHEELFORGE_WHEELS": str(tmp_path), "WHEELFORGE_GIT_REWRITES": " a=b  c=d ",
           "WHEELFORGE_INDEX_URL": "http://mirror.invalid/simple",
           "WHEELFORGE_DEBIAN_MIRROR": " http://deb.invalid/debian ",
           "WHEELFORGE_PROGRESS": "plain", "WHEELFORGE_HEARTBEAT_SECONDS": "2",
           "WHEELFORGE_DOCKER": "/opt/docker", "MAX_JOBS": "3", "WHEELFORGE_PIP_INDEX_URL": "  "}
    s = settings.current(env)
    assert s.wheels == tmp_path and s.git_rewrites == ("a=b", "c=d")
    assert (s.index_url, s.debian_mirror) == ("http://mirror.invalid/simple",
                                              "http://deb.invalid/debian")
    assert (s.progress, s.heartbeat_seconds, s.docker, s.max_jobs) == ("plain", "2",
                                                                       "/opt/docker", "3")
    assert s.pip_index_url is None and "WHEELFORGE_PIP_INDEX_URL" not in s.from_env
    assert settings.get("WHEELFORGE_DOCKER", env) == "/opt/docker"
    assert settings.get("WHEELFORGE_DOCKER", {"WHEELFORGE_DOCKER": ""}) == "docker"
    lines = dict(line.removeprefix("setting: ").split(" = ", 1) for line in s.lines())
    assert lines["WHEELFORGE_WHEELS"] == f"{tmp_path} (env)"
    assert lines["WHEELFORGE_PIP_INDEX_URL"] == "(none) (default)"
    assert lines["MAX_JOBS"] == "3 (env)"


def test_current_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WHEELFORGE_DOCKER", "podman")
    assert settings.current().docker == "podman" == settings.get("WHEELFORGE_DOCKER")
    monkeypatch.setenv("WHEELFORGE_PROGRESS", "plain")
    assert settings.current().progress == "plain"
    assert settings.current(options={"WHEELFORGE_PROGRESS": None}).progress == "plain"
    assert settings.current(options={"WHEELFORGE_PROGRESS": "auto"}).progress == "auto"


@pytest.mark.parametrize(("url", "shown"), [
    ("https://user:tok3n@index.example.invalid/simple", "https://***@index.example.invalid/simple"),
    ("https://tok3n@index.example.invalid:8443/a/b?x=1", "https://***@index.example.invalid:8443/a/b?x=1"),
    ("https://index.example.invalid/simple", "https://index.example.invalid/simple"),
])
def test_urls_are_masked(url: str, shown: str):
    assert settings.mask_url(url) == shown


def test_secrets_never_print_in_the_clear():
    secret = "https://user:tok3n@index.example.invalid/simple"
    lines = settings.current({"WHEELFORGE_PIP_INDEX_URL": secret}).lines()
    assert "setting: WHEELFORGE_PIP_INDEX_URL = https://***@index.example.invalid/simple (env)" \
        in lines
    assert not any("tok3n" in line for line in lines)
    # not a URL: nothing of it is shown
    var = settings.BY_NAME["WHEELFORGE_PIP_INDEX_URL"]
    assert settings.shown(var, "tok3n") == "***"
    assert settings.shown(settings.BY_NAME["WHEELFORGE_DOCKER"], "tok3n") == "tok3n"


def test_one_line_per_setting_in_the_stated_form():
    lines = settings.current({}).lines()
    read_here = [v.name for v in settings.VARS if settings.PACKAGE in v.read_by] + ["MAX_JOBS"]
    assert [line.split()[1] for line in lines] == read_here
    for line in lines:
        assert re.fullmatch(r"setting: [A-Z_]+ = \S.* \((env|default)\)", line), line


def _env_reads(tree: ast.AST) -> list[tuple[int, str]]:
    """Reads of WHEELFORGE_* variables: X.get/pop/setdefault(NAME), getenv(NAME), X[NAME]
    where X is an environment (os.environ, environ, env, a `Mapping` of it)."""
    def named(node: ast.expr) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                r"WHEELFORGE_[A-Z0-9_]+", node.value):
            return node.value
        return None

    def environment(node: ast.expr) -> bool:
        return "env" in ast.unparse(node).lower()

    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and named(node.args[0]):
            func = node.func
            if (isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault")
                    and environment(func.value)) or ast.unparse(func).endswith("getenv"):
                out.append((node.lineno, named(node.args[0])))
        elif isinstance(node, ast.Subscript) and named(node.slice) and environment(node.value):
            out.append((node.lineno, named(node.slice)))
        elif (isinstance(node, ast.Compare) and named(node.left)
              and any(environment(c) for c in node.comparators)):
            out.append((node.lineno, named(node.left)))
    return out


def test_the_reader_check_finds_reads():
    source = ('import os\nos.environ.get("WHEELFORGE_X")\nos.getenv("WHEELFORGE_Y", "1")\n'
              'env["WHEELFORGE_Z"]\n"WHEELFORGE_W" in os.environ\nsay("WHEELFORGE_X: bad")\n'
              'settings.get("WHEELFORGE_V", env)\nsecret(env="WHEELFORGE_U")\n')
    assert [n for _, n in _env_reads(ast.parse(source))] == [
        "WHEELFORGE_X", "WHEELFORGE_Y", "WHEELFORGE_Z", "WHEELFORGE_W"]


def test_only_settings_reads_wheelforge_variables():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "core" / "settings.py":
            continue
        for line, name in _env_reads(ast.parse(path.read_text(), str(path))):
            found.append(f"{path.relative_to(settings.ROOT)}:{line}: {name}")
    assert not found, "read these through wheelforge.settings: " + "; ".join(found)


def test_every_variable_is_known_and_documented():
    used = set()
    for path in [*PACKAGE.rglob("*.py"), settings.ROOT / "tasks.py",
                 settings.ROOT / "ci" / "setup-host.sh", *settings.DOCKER_DIR.glob("*.py")]:
        used |= set(re.findall(r"WHEELFORGE_(?!TEST_)[A-Z0-9_]*[A-Z0-9]", path.read_text()))
    assert used <= set(settings.BY_NAME), sorted(used - set(settings.BY_NAME))
    docs = DOCS.read_text()
    for var in (*settings.VARS, settings.MAX_JOBS):
        assert f"`{var.name}`" in docs, var.name
        if var.option:
            assert var.option in docs, var.option
    for name in re.findall(r"\b[A-Z_]+(?= = CACHE /)", Path(settings.__file__).read_text()):
        folder = getattr(settings, name).name
        assert f".cache/{folder}" in docs, name


# ---- wheel file names: one reader (wheelforge/core/wheelset.py) ---------------------------------

def test_wheel_names_are_read_by_packaging():
    w = wheelset.parse("msgpack_numpy-0.4.8-1-py2.py3-none-any.whl")
    assert (w.distribution, w.version, w.name, str(w.parsed_version)) == (
        "msgpack_numpy", "0.4.8", "msgpack-numpy", "0.4.8")
    assert w.tags == {"py2-none-any", "py3-none-any"}
    for bad in ("app-1.0.whl", "a/b-1.0-py3-none-any.whl", "app 1-1.0-py3-none-any.whl",
                "app-1.0-py3-none-any.whl\n", "app-one-py3-none-any.whl"):
        with pytest.raises(ValueError, match="is not a wheel file name"):
            wheelset.parse(bad)
    assert wheelset.canonical("Amd_Aiter") == wheelset.canonical("amd.aiter") == "amd-aiter"
    assert wheelset.same_version("1.0_rc1", "1.0rc1") and not wheelset.same_version("1", "2")
    assert wheelset.distribution_of("dist/Foo_Bar-*.whl") == "foo-bar"
    assert wheelset.distribution_of("./x/Foo_Bar-1.0-py3-none-any.whl") == "foo-bar"


def test_no_module_reads_wheel_file_names_by_hand():
    """Host modules read wheel names with core/wheelset.py (packaging); no `.split("-")` of
    a .whl name remains."""
    hand = re.compile(r"""\.whl.*\.split\(["']-["']\)|\.split\(["']-["']\).*\.whl|"""
                      r"""WHEEL[A-Z_]*RE\s*=""")
    found = [f"{p.relative_to(settings.ROOT)}:{i}" for p in sorted(PACKAGE.rglob("*.py"))
             if "smoke" not in p.relative_to(PACKAGE).parts
             for i, line in enumerate(p.read_text().splitlines(), 1) if hand.search(line)]
    assert not found, found


def test_invoke_wheels_says_the_settings_first(monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]):
    monkeypatch.setenv("WHEELFORGE_PIP_INDEX_URL", "https://u:tok3n@index.example.invalid/s")
    monkeypatch.setenv("WHEELFORGE_WHEELS", str(settings.ROOT / "elsewhere"))
    monkeypatch.setattr(wheelforge.build, "checked_plan", lambda *a, **k: (_ for _ in ()).throw(
        RuntimeError("planned")))
    with pytest.raises(RuntimeError, match="planned"):
        build_wheels(None, channel=None, cells=None, options=cli.build_options(ca_bundle=None))
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"setting: WHEELFORGE_WHEELS = {settings.ROOT / 'elsewhere'} (env)"
    assert ("setting: WHEELFORGE_PIP_INDEX_URL = https://***@index.example.invalid/s (env)"
            in err)
    assert not any("tok3n" in line for line in err)


def test_the_summary_shows_what_the_run_uses_an_option_over_the_environment(capsys, monkeypatch):
    """`invoke wheels --max-jobs 8` says MAX_JOBS = 8 (option --max-jobs), not the
    environment's value or the default."""

    monkeypatch.setenv("MAX_JOBS", "2")
    options = cli.build_options(max_jobs=8, ca_bundle=None, progress="plain")
    assert options.max_jobs == 8
    say_settings(options)
    err = capsys.readouterr().err
    assert "setting: MAX_JOBS = 8 (option --max-jobs)" in err
    assert "setting: WHEELFORGE_PROGRESS = plain (option --progress)" in err
    options = cli.build_options(ca_bundle=None)
    assert options.max_jobs == 2
    say_settings(options)
    assert "setting: MAX_JOBS = 2 (env)" in capsys.readouterr().err
    with pytest.raises(UserError, match="--progress fancy"):
        cli.build_options(progress="fancy")
