"""The wheel-set check (docker/wheelset-check.py, also loaded by wheelforge/core/wheelset.py).

Real wheels (zip files with a RECORD) are written here, then spoiled one way each:
a zip-slip member, an absolute path, a truncated file, a wrong RECORD hash, a member
RECORD does not list, odd file names. Hostile manifests live in hostile/manifests/.
The script runs as a subprocess with this machine's python3, the way the runtime
image runs it; every refusal is one `wheelforge-error:` line and exit status 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.unit.conftest import ROOT
from wheelforge.core import wheelset
from wheelforge.core.terminal import UserError

SCRIPT = ROOT / "docker" / "wheelset-check.py"
RECORD_SCRIPT = ROOT / "docker" / "record-check.py"
MANIFESTS = Path(__file__).parent / "hostile" / "manifests"
NAME = "app-1.0-py3-none-any.whl"


def record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def make_wheel(path: Path, members: dict[str, bytes] | None = None, *,
               record_extra: list[str] = (), unlisted: dict[str, bytes] | None = None,
               bad_hash_for: str | None = None,
               wheel_text: bytes = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\n") -> Path:
    """A wheel of app 1.0: `members` plus dist-info, RECORD listing them (unless unlisted)."""
    members = dict(members or {"app/__init__.py": b"VALUE = 1\n"})
    members["app-1.0.dist-info/METADATA"] = b"Metadata-Version: 2.1\nName: app\nVersion: 1.0\n"
    members["app-1.0.dist-info/WHEEL"] = wheel_text
    lines = [f"{n},{record_hash(b'x' if n == bad_hash_for else d)},{len(d)}"
             for n, d in members.items()]
    lines += [*record_extra, "app-1.0.dist-info/RECORD,,"]
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in {**members, **(unlisted or {})}.items():
            zf.writestr(name, data)
        zf.writestr("app-1.0.dist-info/RECORD", "\n".join(lines) + "\n")
    return path


def make_set(folder: Path, wheel_name: str = NAME, **wheel_args) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wheel = make_wheel(folder / wheel_name, **wheel_args)
    entry = wheelset.wheel_entry(wheel) if wheel_name == NAME else {
        "file": wheel_name, "distribution": "app", "version": "1.0",
        "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "size": 1}
    (folder / "manifest.json").write_text(json.dumps(
        {"cell": "stable-x", "components": {"app": {"wheels": [entry], "runtime": True,
                                                    "imports": ["app"]}},
         "runtime_deps": []}))
    return folder


def check(action: str, folder: Path) -> subprocess.CompletedProcess:
    """wheelset-check.py ACTION DIR; `apt` is record-check.py's, which reads the same way."""
    script = RECORD_SCRIPT if action == "apt" else SCRIPT
    return subprocess.run([sys.executable, str(script), action, str(folder)],
                          capture_output=True, text=True, timeout=120, check=False)


def refused(folder: Path, action: str = "before") -> str:
    proc = check(action, folder)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("wheelforge-error: ")
    assert proc.stdout == ""
    return line.removeprefix("wheelforge-error: ")


def test_a_sound_set_passes_and_gives_its_requirements(tmp_path: Path):
    folder = make_set(tmp_path / "set")
    proc = check("before", folder)
    assert proc.returncode == 0, proc.stderr
    assert "1 wheels match manifest.json, each opened" in proc.stdout
    assert check("requirements", folder).stdout == "app==1.0\n"
    assert wheelset.verify(folder)["cell"] == "stable-x"


@pytest.mark.parametrize(("members", "problem"), [
    ({"../evil.py": b"x"}, "member '../evil.py' has a '..' part in its path"),
    ({"app/../../evil.py": b"x"}, "member 'app/../../evil.py' has a '..' part in its path"),
    ({"/etc/evil": b"x"}, "member '/etc/evil' has an absolute path"),
    ({"C:/evil": b"x"}, "member 'C:/evil' has an absolute path"),
    ({"app\\..\\evil": b"x"}, "member 'app\\\\..\\\\evil' has a backslash or control character"),
    ({"app/evil\n.py": b"x"}, "member 'app/evil\\n.py' has a backslash or control character"),
])
def test_unsafe_member_paths_are_refused(tmp_path: Path, members: dict, problem: str):
    folder = make_set(tmp_path / "set", members=members)
    assert refused(folder).startswith(f"{NAME} (app): {problem}")


def test_truncated_wheel_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set")
    wheel = folder / NAME
    data = wheel.read_bytes()[:-40]
    wheel.write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["components"]["app"]["wheels"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert refused(folder).startswith(f"{NAME} (app): not a sound zip file (BadZipFile")


def test_wrong_record_hash_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set", bad_hash_for="app/__init__.py")
    assert refused(folder) == (f"{NAME} (app): member 'app/__init__.py' does not match its "
                               f"sha256 in app-1.0.dist-info/RECORD; the wheel is corrupted, "
                               f"rebuild it")


def test_a_wheel_file_retagged_after_record_is_a_note_only_when_it_says_the_names_tags(
        tmp_path: Path, capsys):
    """A retag by hand (amd_mori 1.2.4 on PyPI) leaves RECORD's hash of WHEEL stale: a note
    when WHEEL's tags are exactly the file name's, else the usual refusal."""
    retagged = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    folder = make_set(tmp_path / "ok", bad_hash_for="app-1.0.dist-info/WHEEL",
                      wheel_text=retagged)
    wheelset.verify(folder)
    assert "'app-1.0.dist-info/WHEEL' was edited after app-1.0.dist-info/RECORD was " \
           "written" in capsys.readouterr().err
    other = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: cp312-cp312-linux_x86_64\n"
    folder = make_set(tmp_path / "other", bad_hash_for="app-1.0.dist-info/WHEEL",
                      wheel_text=other)
    assert refused(folder) == (f"{NAME} (app): member 'app-1.0.dist-info/WHEEL' does not "
                               f"match its sha256 in app-1.0.dist-info/RECORD; the wheel is "
                               f"corrupted, rebuild it")


def test_member_missing_from_record_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set", unlisted={"app/planted.py": b"import os\n"})
    assert refused(folder) == (f"{NAME} (app): member 'app/planted.py' is not listed in "
                               f"app-1.0.dist-info/RECORD; the wheel was changed after it was "
                               f"built, rebuild it")


def test_record_entry_without_member_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set", record_extra=[f"app/gone.py,{record_hash(b'')},0"])
    assert refused(folder) == (f"{NAME} (app): app-1.0.dist-info/RECORD lists 'app/gone.py', "
                               f"which the wheel does not hold; rebuild it")


def test_crc_mismatch_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set", members={"app/data.bin": b"A" * 4000})
    wheel = folder / NAME
    data = bytearray(wheel.read_bytes())
    at = data.index(b"A" * 100)  # stored uncompressed: flip one byte of the member
    data[at] ^= 0x01
    wheel.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["components"]["app"]["wheels"][0]["sha256"] = hashlib.sha256(data).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert refused(folder).startswith(f"{NAME} (app): not a sound zip file (BadZipFile: Bad "
                                      f"CRC-32")


@pytest.mark.parametrize("odd", ["app-1.0-py3-none-any .whl", "app 1.0-py3-none-any.whl",
                                 "app-1.0-py3-none-any\n.whl", "app-1.0.whl"])
def test_odd_file_names_in_the_folder_are_refused(tmp_path: Path, odd: str):
    folder = make_set(tmp_path / "set")
    make_wheel(folder / odd)
    assert refused(folder).startswith(f"{odd!r}: not in manifest.json" if odd.endswith(".whl")
                                      else f"{odd!r}: not a wheel")


def test_symlink_in_the_set_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "set")
    (folder / "other-1.0-py3-none-any.whl").symlink_to("/etc/passwd")
    assert refused(folder) == ("'other-1.0-py3-none-any.whl': not a regular file (a link, "
                               "folder or device); a wheel set holds only wheels, rebuild it "
                               "with invoke wheels")


MANIFEST_CASES = {
    "cell_with_newline": "cell: 'stable-x\\n' is not a valid cell",
    "components_list": "components: [{'wheels': []}] is not an object",
    "deep_nesting": "unreadable (RecursionError",
    "distribution_differs_from_file":
        "components.app.wheels[0]: distribution other 1.0 differs from its file "
        "app-1.0-py3-none-any.whl",
    "distribution_newline_injection":
        "components.app.wheels[0].distribution: 'app\\n--find-links=https://example.invalid/' "
        "is not a distribution name",
    "empty_object": "components: None is not an object",
    "file_with_newline":
        "components.app.wheels[0].file: 'app-1.0-py3-none-any.whl\\n' is not a wheel file name",
    "file_with_slash":
        "components.app.wheels[0].file: '../app-1.0-py3-none-any.whl' is not a wheel file name",
    "file_with_space":
        "components.app.wheels[0].file: 'app-1.0-py3-none-any .whl' is not a wheel file name",
    "file_without_tags": "components.app.wheels[0].file: 'app-1.0.whl' is not a wheel file name",
    "imports_not_modules":
        "components.app.imports[0]: 'os; import evil' is not a Python module name",
    "listed_twice": "components: app-1.0-py3-none-any.whl is listed twice",
    "not_json": "unreadable (JSONDecodeError",
    "runtime_deps_mapping": "runtime_deps: {'a': 1} is not a list",
    "runtime_not_boolean": "components.app.runtime: 'yes' is not true or false",
    "sha256_null": "components.app.wheels[0].sha256: None is not 64 hex digits",
    "sha256_short": "components.app.wheels[0].sha256: 'abc' is not 64 lowercase hex digits",
    "size_not_number": "components.app.wheels[0].size: '1' is not a whole number",
    "top_level_list": "(top level): [1, 2] is not an object",
    "version_injection":
        "components.app.wheels[0].version: '1.0 --index-url=https://example.invalid/' is not a "
        "version",
    "wheel_entry_string":
        "components.app.wheels[0]: 'app-1.0-py3-none-any.whl' is not an object",
    "wheels_mapping": "components.app.wheels: {'file': 'x'} is not a list",
}


def test_manifest_corpus_and_table_match():
    assert sorted(p.stem for p in MANIFESTS.glob("*.json")) == sorted(MANIFEST_CASES)


@pytest.mark.parametrize(("case", "problem"), sorted(MANIFEST_CASES.items()))
@pytest.mark.parametrize("action", ["before", "requirements", "apt"])
def test_hostile_manifests_are_one_line(tmp_path: Path, case: str, problem: str, action: str):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "manifest.json").write_bytes((MANIFESTS / f"{case}.json").read_bytes())
    line = refused(folder, action)
    assert line.startswith(f"{folder}/manifest.json: {problem}"), line
    # the host reads manifests with the same checks, as a UserError
    with pytest.raises(UserError) as caught:
        wheelset.read_manifest(folder)
    assert str(caught.value) == line


def test_host_verify_refuses_a_spoiled_set_in_one_line(tmp_path: Path):
    folder = make_set(tmp_path / "set", members={"../evil.py": b"x"})
    with pytest.raises(UserError) as caught:
        wheelset.verify(folder)
    assert str(caught.value).startswith(f"{NAME} (app): member '../evil.py' has a '..' part")


@pytest.mark.parametrize("name", ["app-1.0.whl", "app-1.0-py3-none-any.whl\n",
                                  "app 1-1.0-py3-none-any.whl", "a/b-1.0-py3-none-any.whl"])
def test_parse_wheel_name_is_strict(name: str):
    with pytest.raises(UserError):
        wheelset.parse_wheel_name(name)
    assert wheelset.parse_wheel_name("msgpack_numpy-0.4.8-1-py2.py3-none-any.whl") == (
        "msgpack_numpy", "0.4.8")


def test_a_set_from_another_plan_than_the_last_build_began_is_refused(tmp_path: Path):
    folder = make_set(tmp_path / "wheels" / "stable-x")
    manifest = wheelset.read_manifest(folder)
    wheelset.require_planned(folder, manifest)  # no build began since: the set is current
    wheelset.record_planned(tmp_path / "wheels", "stable-x", wheelset.manifest_plan_id(manifest))
    wheelset.require_planned(folder, manifest)  # the last build made this set
    wheelset.record_planned(tmp_path / "wheels", "stable-x", "0123456789ab")
    with pytest.raises(UserError) as caught:
        wheelset.require_planned(folder, manifest)
    assert str(caught.value).startswith(
        f"{folder}: this set is from plan {wheelset.manifest_plan_id(manifest)}, but the last "
        f"`invoke wheels` for stable-x planned 0123456789ab and did not finish; run ")
