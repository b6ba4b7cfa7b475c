"""Pure rules of publishing: dated tags that never move, promotion on evidence, and every
tag read back after it is set."""

from __future__ import annotations

import datetime

import pytest

from wheelforge import publish
from wheelforge.core.terminal import UserError
from wheelforge.publish import refusal, tags
from wheelforge.smoke import report

CELL = "stable-bookworm-py3.11-x86-64-v2-default"
DAY = datetime.date(2026, 11, 24)
DIGEST = "sha256:" + "ab" * 32


def test_a_second_image_of_a_day_gets_the_next_free_suffix() -> None:
    assert tags.next_dated_tag([], CELL, DAY) == f"{CELL}-20261124"
    have = [f"{CELL}-20261124", "latest", f"{CELL}-20261123"]
    assert tags.next_dated_tag(have, CELL, DAY) == f"{CELL}-20261124.1"
    have += [f"{CELL}-20261124.1", f"{CELL}-20261124.7", f"other-{CELL}-20261124.9"]
    assert tags.next_dated_tag(have, CELL, DAY) == f"{CELL}-20261124.8"
    assert [t for _, _, t in tags.dated_tags(have, CELL)] == [
        f"{CELL}-20261123", f"{CELL}-20261124", f"{CELL}-20261124.1", f"{CELL}-20261124.7"]
    assert tags.dated_tags([f"{CELL}-20261124.0", f"{CELL}-20261324"], CELL) == []
    # publish has no parser of its own: the one rule lives in publish/tags.py
    assert getattr(publish, "dated_tags", tags.dated_tags) is tags.dated_tags
    assert getattr(publish, "next_dated_tag", tags.next_dated_tag) is tags.next_dated_tag


def checks(*pairs: tuple[str, str]) -> list[dict]:
    return [{"name": n, "status": s, "reason": "", "seconds": 0.0, "metrics": {}}
            for n, s in pairs]


def test_only_checks_that_ran_on_a_gpu_count_as_evidence() -> None:
    cpu = report.build_report({"device": None}, [
        report.CheckResult("device", "skip", "no GPU visible", 0.0),
        report.CheckResult("manifest", "pass", "ok", 0.1)], DIGEST)
    assert cpu["passed"] is True and cpu["gpu_checks"] == 0
    gpu = report.build_report({"device": "cuda"}, [
        report.CheckResult("device", "pass", "1 GPU", 0.0, gpu=True),
        report.CheckResult("gemm", "fail", "wrong", 0.0, gpu=True),
        report.CheckResult("allreduce", "skip", "needs 2 GPUs", 0.0),
        report.CheckResult("manifest", "pass", "ok", 0.1)], DIGEST)
    assert gpu["gpu_checks"] == 2
    assert report.gpu_check_names(gpu) == ["device", "gemm"]
    # A report without the checks' own flags (--device cpu, an older suite, a summary
    # count alone) is no evidence, whatever its host says.
    on_cpu = {"host": {"device": "cpu"}, "checks": checks(("gemm", "pass"))}
    assert report.gpu_check_names(on_cpu) == []
    claimed = {"host": {"device": "cuda"}, "gpu_checks": 3, "checks": checks(("gemm", "pass"))}
    assert report.gpu_check_names(claimed) == []
    skipped = {"checks": [{"name": "gemm", "status": "skip", "gpu": True}]}
    assert report.gpu_check_names(skipped) == []


def test_refusals_name_the_reason() -> None:
    gpu = {"passed": True, "image_digest": DIGEST, "host": {"device": "cuda"},
           "checks": [{**checks(("device", "pass"))[0], "gpu": True}]}
    assert refusal(gpu, DIGEST, allow_cpu_smoke=False) == ""
    assert refusal(gpu, "sha256:" + "cd" * 32, allow_cpu_smoke=True).startswith(
        f"the smoke report is for {DIGEST}, not sha256:cdcd")
    failed = {**gpu, "passed": False, "checks": checks(("device", "pass"), ("gemm", "fail"))}
    assert refusal(failed, DIGEST, allow_cpu_smoke=True) == "smoke failed (gemm)"
    skipped = {"passed": True, "image_digest": DIGEST, "host": {"device": None},
               "checks": checks(("device", "skip"), ("manifest", "pass"))}
    assert refusal(skipped, DIGEST, allow_cpu_smoke=False).startswith(
        "no smoke check ran on a GPU (device: none)")
    assert refusal(skipped, DIGEST, allow_cpu_smoke=True) == ""
    assert refusal({"passed": True, "image_digest": DIGEST}, DIGEST,
                   allow_cpu_smoke=False).startswith("no smoke check ran on a GPU")


class HeldRegistry:
    """A registry in memory (tag -> digest) whose tags land on `lands_on` when it is set."""

    host = "127.0.0.1:5000"

    def __init__(self, lands_on: str = "") -> None:
        self.held: dict[str, str] = {}
        self.lands_on = lands_on

    def tag(self, repo: str, digest: str, tag: str) -> None:
        self.held[tag] = self.lands_on or digest

    def resolve(self, repo: str, ref: str) -> str | None:
        return self.held.get(ref)


def test_a_tag_that_reads_back_as_another_digest_is_one_line() -> None:
    keeps = HeldRegistry()
    publish.set_tag(keeps, "wf/rt", DIGEST, "latest")
    assert keeps.held == {"latest": DIGEST}
    rewrites = HeldRegistry(lands_on="sha256:" + "cd" * 32)
    with pytest.raises(UserError) as info:
        publish.set_tag(rewrites, "wf/rt", DIGEST, "latest")
    assert str(info.value) == (
        f"127.0.0.1:5000/wf/rt:latest points at sha256:{'cd' * 32} after tagging it as "
        f"{DIGEST}; the registry rewrote the manifest, so tag with a registry that keeps "
        "manifests byte-exact")
