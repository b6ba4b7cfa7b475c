"""Recipe loading: the production and demo sets load; every bad file is one exact line.

The corpus in bad_recipes/ holds one directory per mistake (a matrix.yaml and
recipe files, each a complete recipe set: `invoke plan --recipes DIR` shows the
same error by hand). Each case's message is asserted exactly: file, line, key,
problem and fix. Expected messages name files relative to the case directory;
`DIR/` stands for it inside a message.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from tests.unit.conftest import ROOT, git_recipe, run_invoke, write_set
from wheelforge.core import types
from wheelforge.core.terminal import UserError
from wheelforge.core.types import GitSource, IndexSource, SdistSource
from wheelforge.plan import make_plan
from wheelforge.recipes import load
from wheelforge.recipes.component import template_variables
from wheelforge.recipes.yamlschema import Text

BAD = Path(__file__).parent / "bad_recipes"
BAD_DISPLAY = BAD.relative_to(ROOT).as_posix()

GIT_URL_HINT = (" (https, http, ssh, git or file URLs, or user@host:path; no part may start "
                "with '-')")
CORPUS = [
    ("bad_component_name",
     "My_App.yaml:1: name: 'My_App' is not a valid component name (lowercase letters, "
     "digits, . _ + -)"),
    ("bad_placeholder_conversion",
     "app.yaml:6: env.GPU_ARCHS: bad placeholder {archs!r}; placeholders are {name} (write "
     "{{ and }} for literal braces)"),
    ("bad_placeholder_unbalanced",
     "app.yaml:6: env.GPU_ARCHS: bad placeholder syntax (expected '}' before end of "
     "string); placeholders are {name} (write {{ and }} for literal braces)"),
    ("bad_url", "app.yaml:3: source.git: 'ftp://example.invalid/app.git' is not a valid git URL"
                f"{GIT_URL_HINT}"),
    ("boolean_not_true_false", "app.yaml:9: outputs.prefix: must be true or false"),
    ("branch_metachars",
     "app.yaml:5: source.branch: 'main;rm -rf /' is not a valid branch name (contains ' ' "
     "';'; shell metacharacters are refused)"),
    ("dependency_cycle",
     "a.yaml:5: depends: dependency cycle a -> b -> c -> a; remove one of these dependencies"),
    ("depends_on_itself", "app.yaml:5: depends[0]: 'app' depends on itself"),
    ("depends_on_missing",
     "app.yaml:5: depends: no component 'tirton' (did you mean 'triton'?); add "
     "DIR/tirton.yaml or remove it"),
    ("duplicate_list_item", "app.yaml:5: apt[2]: 'clang' is listed twice; remove one"),
    ("duplicate_yaml_key", "app.yaml:7: invalid YAML: key 'steps' appears twice; fix the syntax"),
    ("empty_steps", "app.yaml:5: steps: needs at least one build step"),
    ("env_value_not_scalar", "app.yaml:6: env.CFLAGS: must be a single value (a string)"),
    ("git_no_pin_no_branch",
     "app.yaml:2: source: a git source needs a pin (full commit) or a branch"),
    ("index_not_pinned",
     "app.yaml:4: source.packages[1]: 'helper>=2' is not pinned; write name==version"),
    ("invalid_yaml",
     "app.yaml:5: invalid YAML: expected <block end>, but found '<block mapping start>'; "
     "fix the syntax"),
    ("lowercase_env_key",
     "app.yaml:6: env.gpu_archs: 'gpu_archs' is not a valid environment name (UPPER_CASE "
     "letters, digits and _)"),
    ("matrix_bad_python", "matrix.yaml:6: python[0]: '3' is not a valid Python version (3.N)"),
    ("matrix_empty_arch_set",
     "matrix.yaml:10: archs.gfx950: lists no arch; add at least one (e.g. [gfx942])"),
    ("matrix_missing_repository", "matrix.yaml:1: missing required key 'repository'; add it"),
    ("matrix_runner_unknown_arch",
     "matrix.yaml:17: runners.gfx924: no arch set named 'gfx924' (did you mean 'gfx942'?); "
     "arch sets: gfx942, gfx950"),
    ("matrix_unknown_arch",
     "matrix.yaml:10: archs.gfx950[0]: unknown arch 'gfx924' (did you mean 'gfx942'?); "
     "known archs: gfx942, gfx950"),
    ("matrix_unknown_channel",
     "matrix.yaml:1: channels[1]: 'nigthly': write stable or nightly (did you mean "
     "'nightly'?)"),
    ("matrix_unknown_key", "matrix.yaml:7: known_arch: unknown key (did you mean 'known_archs'?)"),
    ("matrix_variant_var_shadows_cell",
     "matrix.yaml:13: variants.ckfree.vars.archs: {archs} is set by the cell or the recipe "
     "itself; give the variable another name"),
    ("matrix_variant_vars_differ",
     "matrix.yaml:14: variants.full: must set the same vars as the first variant (enable_ck)"),
    ("mem_per_job_nan", "app.yaml:5: mem_per_job_gb: must be a finite number, e.g. 1 or 0.5"),
    ("missing_outputs", "app.yaml:1: missing required key 'outputs'; add it"),
    ("missing_steps", "app.yaml:1: missing required key 'steps'; add it"),
    ("name_differs_from_file",
     "app.yaml:1: name: 'application' differs from the file name 'app'; rename one so they "
     "match (application.yaml, or application.FLAVOR.yaml for an alternative recipe)"),
    ("not_utf8", "app.yaml:5: not UTF-8 text (byte 0xe9); save the file as UTF-8"),
    ("outputs_produce_nothing",
     "app.yaml:7: outputs: produces nothing; list outputs.wheels or set outputs.prefix"),
    ("runtime_without_wheels",
     "app.yaml:9: runtime: a component without wheels cannot go into the runtime image; set "
     "runtime: false"),
    ("sdist_sha256_not_hex",
     "app.yaml:5: source.sha256: "
     "'c667d3180513422f9c7545be5eec5d296dcbb357e06f72ed39cc683797556e6g' is not a valid "
     "sha256 (64 lowercase hex digits); sha256sum FILE prints it"),
    ("sdist_without_sha256", "app.yaml:2: source: missing required key 'sha256'; add it"),
    ("short_pin",
     "app.yaml:4: source.pin: '622413b' is not a valid full 40-character commit; pin the full "
     "hash (git rev-parse 622413b^{commit})"),
    ("stray_yml_file", "app.yml: recipe files end in .yaml; rename it to app.yaml"),
    ("tag_metachars",
     "app.yaml:5: source.tag: 'v1.0$(reboot)' is not a valid tag name (contains '$' '(' "
     "')'; shell metacharacters are refused)"),
    ("too_many_deps",
     "app.yaml:5: depends: 7 direct dependencies, Dockerfile.wheels has 6 slots; add slots "
     "(dep7...) there"),
    ("two_source_kinds",
     "app.yaml:5: source.sdist: a source has one kind, this one has git and sdist; keep one"),
    ("unknown_output_key", "app.yaml:8: outputs.wheel: unknown key (did you mean 'wheels'?)"),
    ("unknown_placeholder",
     "app.yaml:6: env.GPU_ARCHS: unknown placeholder {arch_list} (did you mean 'archs'?); "
     "known: arch, archs, archs_comma, channel, enable_ck, python, stack, variant, version"),
    ("unknown_source_kind",
     "app.yaml:3: source.gti: unknown source kind (did you mean 'git'?); use one of git, "
     "sdist, index, path"),
    ("unknown_top_key", "app.yaml:5: stpes: unknown key (did you mean 'steps'?)"),
    ("unpinned_stable",
     "app.yaml:2: source: app: unpinned source for the stable channel (branch 'main' only); add "
     "source.pin with the full commit"),
]


# Hostile inputs: values ending in a newline (re.match with `$` once let them through),
# control characters, reserved variables, option-looking URLs, other git transports,
# duplicate cell ids, unbounded nesting and numbers.
NEWLINE = "contains the control character '\\n' (a value is one line); remove it"
HOSTILE = [
    ("apt_trailing_newline", f"app.yaml:5: apt[0]: {NEWLINE}"),
    ("branch_trailing_newline", f"app.yaml:4: source.branch: {NEWLINE}"),
    ("deep_nesting", "app.yaml:6: nested more than 32 levels deep; flatten it"),
    ("depends_trailing_newline", f"app.yaml:5: depends[0]: {NEWLINE}"),
    ("env_key_trailing_newline",
     f"app.yaml:6: env.CFLAGS : {NEWLINE}"),
    ("env_reserved_out",
     "app.yaml:6: env.OUT: $OUT is set by the build itself (see docs/recipes.md); use another "
     "name"),
    ("env_reserved_pip_find_links",
     "app.yaml:6: env.PIP_FIND_LINKS: $PIP_FIND_LINKS is set by the build itself (see "
     "docs/recipes.md); use another name"),
    ("env_value_escape",
     "app.yaml:6: env.CFLAGS: contains the control character '\\x1b' (a value is one line); "
     "remove it"),
    ("env_value_newline", f"app.yaml:6: env.CFLAGS: {NEWLINE}"),
    ("git_url_ext_transport",
     f"app.yaml:3: source.git: 'ext::sh -c touch% /tmp/pwned' is not a valid git URL"
     f"{GIT_URL_HINT}"),
    ("git_url_leading_dash",
     f"app.yaml:3: source.git: '-uevil@example.invalid:app.git' is not a valid git URL"
     f"{GIT_URL_HINT}"),
    ("git_url_option_host",
     f"app.yaml:3: source.git: 'ssh://-oProxyCommand=touch%20x/app.git' is not a valid git "
     f"URL{GIT_URL_HINT}"),
    ("git_url_trailing_newline", f"app.yaml:3: source.git: {NEWLINE}"),
    ("huge_integer",
     "app.yaml:6: a number of 400 characters (at most 64); quote it if it is text"),
    ("matrix_arch_trailing_newline", f"matrix.yaml:7: known_archs[1]: {NEWLINE}"),
    ("matrix_duplicate_cell_id",
     "matrix.yaml:11: archs.gfx942-ck: stack 'base' x arch set 'gfx942' x variant 'ck-free' "
     "and stack 'base' x arch set 'gfx942-ck' x variant 'free' make the same cell id "
     "'<channel>-base-py3.12-gfx942-ck-free'; rename an arch set, variant or stack"),
    ("matrix_image_dotdot",
     "matrix.yaml:4: stacks.base.build_image: 'example.invalid/../build:1' is not a valid "
     "image (empty or '..' path part); write host/name:tag or name@sha256:digest"),
    ("matrix_python_trailing_newline", f"matrix.yaml:6: python[0]: {NEWLINE}"),
    ("matrix_repository_dotdot",
     "matrix.yaml:18: repository: invalid repository name 'example.invalid/../runtime': use "
     "lowercase path components of [a-z0-9] joined by '.', '_', '__' or '-' and separated "
     "by '/' (e.g. 'wheelforge/rocm')"),
    ("matrix_rewrite_dash",
     "matrix.yaml:19: git_rewrites[0]: 'file:///srv/mirror/=-uhttps://example.invalid/': "
     "ORIGINAL '-uhttps://example.invalid/' is not an https, http, ssh, git or file URL "
     "(other transports are refused, no part may start with '-'); fix it"),
    ("matrix_rewrite_ext",
     "matrix.yaml:19: git_rewrites[0]: 'ext::sh -c evil=https://example.invalid/': MIRROR "
     "'ext::sh -c evil' is not an https, http, ssh, git or file URL (other transports are "
     "refused, no part may start with '-'); fix it"),
    ("matrix_variant_var_newline", f"matrix.yaml:13: variants.ckfree.vars.enable_ck: {NEWLINE}"),
    ("path_source_newline", f"app.yaml:3: source.path: {NEWLINE}"),
    ("pin_trailing_newline", f"app.yaml:4: source.pin: {NEWLINE}"),
    ("scp_host_option",
     f"app.yaml:3: source.git: 'git@-oProxyCommand=x:app.git' is not a valid git URL"
     f"{GIT_URL_HINT}"),
    ("step_escape_sequence",
     "app.yaml:6: steps[0]: contains the control character '\\x1b'; only newlines and tabs "
     "may appear here, remove it"),
    ("wheel_name_trailing_newline", f"app.yaml:8: outputs.wheels[0]: {NEWLINE}"),
]
CORPUS += HOSTILE


def plan_stable(directory: Path) -> types.Plan:
    return make_plan(types.Inputs(recipes_dir=directory), channel="stable",
                     cells_glob=None)


def expected_message(case: str, message: str) -> str:
    return f"{BAD_DISPLAY}/{case}/" + message.replace("DIR/", f"{BAD_DISPLAY}/{case}/")


# --- the good sets -----------------------------------------------------------------

def test_production_recipes_load():
    matrix, recipes = load(types.Inputs())
    assert sorted(recipes) == ["aiter", "atom", "flydsl", "llvm-mlir", "mori", "torch", "triton",
                               "zmq"]
    assert matrix.file == "recipes/matrix.yaml"
    assert recipes["aiter"].file == "recipes/aiter.yaml"
    assert recipes["aiter"].depends == ("torch", "triton", "flydsl")
    assert recipes["aiter"].variables == {"enable_ck", "archs", "version"}
    assert recipes["aiter"].wheels == ("amd-aiter",)
    # every wheel-producing git source states the version it must build
    assert {n: r.version for n, r in recipes.items() if isinstance(r.source, GitSource)
            and r.wheels} == {"aiter": "0.1.20", "atom": "0.1.6rc0", "flydsl": "0.3.1",
                              "mori": "1.2.2"}
    assert recipes["mori"].wheels == ("amd_mori",)
    assert recipes["mori"].runtime_apt
    assert isinstance(recipes["torch"].source, IndexSource)
    assert recipes["triton"].source.packages == ("triton-rocm==3.6.0",)
    llvm = recipes["llvm-mlir"]
    assert (llvm.prefix, llvm.wheels, llvm.runtime) == (True, (), False)
    for recipe in recipes.values():
        if isinstance(recipe.source, GitSource):
            assert re.fullmatch(r"[0-9a-f]{40}", recipe.source.pin), recipe.name


def test_production_alternative_torch_recipe_loads():
    alt = ROOT / "recipes" / "alt" / "torch.source.yaml"
    _, recipes = load(types.Inputs(recipe_overrides={"torch": alt}))
    torch = recipes["torch"]
    assert isinstance(torch.source, GitSource)
    assert torch.file == "recipes/alt/torch.source.yaml"
    assert "archs" in torch.variables


def test_demo_recipes_load():
    matrix, recipes = load(types.Inputs(recipes_dir=ROOT / "demo" / "recipes"))
    assert sorted(recipes) == ["hipblend", "hipsaxpy", "jitdemo", "liblz4", "lz4", "msgpack",
                               "msgpack-numpy", "pkgconfig", "scmext"]
    assert recipes["hipblend"].depends == ("hipsaxpy",)
    assert isinstance(recipes["msgpack"].source, SdistSource)
    assert recipes["lz4"].depends == ("liblz4", "pkgconfig")
    assert matrix.git_rewrites == ("file://{root}/.cache/demo-git/=https://demo.wheelforge.invalid/",)


# --- the corpus of bad sets ----------------------------------------------------------

def test_corpus_and_table_match():
    """Every directory has an expected message and every message a directory."""
    assert sorted(p.name for p in BAD.iterdir() if p.is_dir()) == sorted(c for c, _ in CORPUS)
    assert len(CORPUS) >= 25


@pytest.mark.parametrize(("case", "message"), CORPUS, ids=[c for c, _ in CORPUS])
def test_bad_recipes_fail_with_one_exact_line(case: str, message: str):
    # Only UserError is caught: any other exception fails the test with its traceback.
    with pytest.raises(UserError) as caught:
        plan_stable(BAD / case)
    text = str(caught.value)
    assert "\n" not in text
    assert text == expected_message(case, message)
    assert caught.value.exit_code == 2


def test_invoke_plan_on_a_bad_set_prints_one_error_line():
    case = "unknown_top_key"
    proc = run_invoke("plan", "--recipes", f"{BAD_DISPLAY}/{case}")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [f"error: {expected_message(case, dict(CORPUS)[case])}"]
    assert proc.stdout == ""


# --- details of recipe parsing --------------------------------------------------------

def test_numbers_keep_their_text(tmp_path: Path):
    """`python: [3.10]` is Python 3.10, not the float 3.1; `0755` stays 0755."""
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    matrix = (directory / "matrix.yaml").read_text()
    (directory / "matrix.yaml").write_text(matrix.replace("- '3.12'", "- 3.10"))
    with (directory / "app.yaml").open("a") as f:
        f.write("env:\n  MODE: 0755\n  LEVEL: 2.50\n  COUNT: 1_000\n")
    matrix_, recipes = load(types.Inputs(recipes_dir=directory))
    assert matrix_.pythons == ("3.10",)
    assert matrix_.cells("stable")[0].id == "stable-base-py3.10-gfx942-ckfree"
    assert dict(recipes["app"].env) == {"MODE": "0755", "LEVEL": "2.50", "COUNT": "1_000"}


def test_on_off_values_stay_strings(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app", env={"CK": "x"})})
    text = (directory / "app.yaml").read_text().replace("CK: x", "CK: off")
    (directory / "app.yaml").write_text(text)
    _, recipes = load(types.Inputs(recipes_dir=directory))
    assert dict(recipes["app"].env) == {"CK": "off"}


def test_an_unquoted_date_tag_is_the_tags_name(tmp_path: Path):
    """YAML reads `tag: 2024-01-01` as a date; a recipe reads the tag's name."""
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    text = (directory / "app.yaml").read_text()
    (directory / "app.yaml").write_text(text.replace("  branch: main\n",
                                                     "  branch: main\n  tag: 2024-01-01\n"))
    _, recipes = load(types.Inputs(recipes_dir=directory))
    assert recipes["app"].source.tag == "2024-01-01"


def test_flags_are_true_or_false_and_nothing_else(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    text = (directory / "app.yaml").read_text()
    for flag, loaded in (("true", True), ("false", False), ("'true'", True)):
        (directory / "app.yaml").write_text(text + f"runtime: {flag}\n")
        assert load(types.Inputs(recipes_dir=directory))[1]["app"].runtime is loaded
    (directory / "app.yaml").write_text(text + "runtime: yes\n")
    with pytest.raises(UserError) as caught:
        load(types.Inputs(recipes_dir=directory))
    line = len(text.splitlines()) + 1
    assert str(caught.value) == f"recipes/app.yaml:{line}: runtime: must be true or false"


@pytest.mark.parametrize(("template", "names"), [
    ("{archs}", ["archs"]),
    ("-march={arch} -DX={enable_ck}", ["arch", "enable_ck"]),
    ("{{literal}} braces", []),
    ("plain", []),
])
def test_template_variables(template: str, names: list[str]):
    assert template_variables(template) == names


@pytest.mark.parametrize(("template", "problem"), [
    ("{archs!r}", "bad placeholder {archs!r}"),
    ("{archs:>8}", "bad placeholder {archs:>8}"),
    ("{0}", "bad placeholder {0}"),
    ("{archs", "bad placeholder syntax (expected '}' before end of string)"),
    ("archs}", "bad placeholder syntax (Single '}' encountered in format string)"),
])
def test_template_variables_refuses(template: str, problem: str):
    with pytest.raises(ValueError) as caught:
        template_variables(template)
    assert str(caught.value) == problem


def test_recipe_override_must_name_a_known_component(tmp_path: Path):
    directory = write_set(tmp_path / "recipes", {"app": git_recipe("app")})
    other = tmp_path / "alt" / "app.other.yaml"
    other.parent.mkdir()
    other.write_text((directory / "app.yaml").read_text())
    _, recipes = load(types.Inputs(recipes_dir=directory,
                                   recipe_overrides={"app": other}))
    assert recipes["app"].file == "alt/app.other.yaml"
    with pytest.raises(UserError) as caught:
        load(types.Inputs(recipes_dir=directory, recipe_overrides={"ap": other}))
    assert str(caught.value) == (f"--recipe ap={other}: no component 'ap' in {directory} "
                                 f"(did you mean 'app'?)")


def test_missing_recipe_directory_is_one_line(tmp_path: Path):
    with pytest.raises(UserError) as caught:
        load(types.Inputs(recipes_dir=tmp_path / "nope"))
    assert str(caught.value) == (f"{tmp_path / 'nope' / 'matrix.yaml'}: no build matrix; "
                                 f"create it or pass --recipes DIR")


def test_a_multiline_value_names_the_character_it_refuses():
    """Newlines and tabs may appear in a step; the message names what may not."""
    with pytest.raises(ValidationError, match=r"contains the control character '\\x01';"):
        TypeAdapter(Text).validate_python("make\nmake install\x01")
