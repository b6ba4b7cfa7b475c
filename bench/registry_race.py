"""The loopback test registry under simultaneous HEADs of a tag: how many get a 400.

    python3 bench/registry_race.py                      # 20 trials of 16 HEADs, each config
    python3 bench/registry_race.py --trials 40 --heads 8 --image IMAGE

Each trial starts a fresh registry (tests/registry_server.py: Debian's distribution 2.8,
filesystem storage), pushes IMAGE (a local image with a Docker schema 2 manifest, e.g. a
demo runtime image, whose history has empty layers) under a tag through the engine, then
sends HEADS simultaneous `HEAD /v2/<repo>/manifests/<tag>` asking only for an OCI image
manifest, as containerd's pusher does for each manifest of an image index it pushes onto
a tag. distribution 2.8 answers such a HEAD by converting the schema 2 manifest to
schema 1, which stores a gzipped empty layer into the repository inside the HEAD. The
filesystem driver writes a link file by truncating it, then writing; a HEAD that reads the
link in between fails with `400 manifest invalid: invalid checksum digest format`.

Both configurations run: the test registry's (blob descriptors cached in memory, as in
Debian's packaged config.yml) and the same without that cache. Results go to
bench/results/registry_race.json.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import registry_server  # noqa: E402

IMAGE = "wheelforge/demo-runtime:stable-bookworm-py3.11-x86-64-v2-default"  # `make demo`
ACCEPT = "application/vnd.oci.image.manifest.v1+json, */*"


def docker(*args: str) -> None:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"registry_race: docker {' '.join(args)}: {proc.stderr.strip()[:300]}")


def trial(image: str, heads: int, *, blob_cache: bool) -> list[int]:
    """Push `image` to a fresh registry, send `heads` simultaneous HEADs; their statuses."""
    with tempfile.TemporaryDirectory(prefix="wheelforge-race-") as tmp, \
            registry_server.start(Path(tmp), blob_cache=blob_cache) as server:
        ref = f"{server.host}/bench/race:held"
        docker("tag", image, ref)
        try:
            docker("push", "-q", ref)
        finally:
            docker("rmi", ref)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        start = threading.Barrier(heads)
        statuses: list[int] = []

        def head() -> None:
            req = urllib.request.Request(f"http://{server.host}/v2/bench/race/manifests/held",
                                         method="HEAD", headers={"Accept": ACCEPT})
            start.wait()
            try:
                with opener.open(req, timeout=30) as resp:
                    statuses.append(resp.status)
            except urllib.error.HTTPError as err:
                statuses.append(err.code)

        threads = [threading.Thread(target=head) for _ in range(heads)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--image", default=IMAGE)
    args = parser.parse_args()
    results = {}
    for blob_cache in (True, False):
        counts: collections.Counter[int] = collections.Counter()
        failed_trials = 0
        for _ in range(args.trials):
            statuses = trial(args.image, args.heads, blob_cache=blob_cache)
            counts.update(statuses)
            failed_trials += 400 in statuses
        name = "blob descriptor cache" if blob_cache else "no cache"
        results[name] = {"trials": args.trials, "heads_per_trial": args.heads,
                         "statuses": {str(k): v for k, v in sorted(counts.items())},
                         "trials_with_a_400": failed_trials}
        print(f"{name}: {args.trials} trials x {args.heads} HEADs: "
              + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
              + f"; trials with a 400: {failed_trials}")
    out = ROOT / "bench" / "results" / "registry_race.json"
    version = subprocess.run([registry_server.BINARY, "--version"], capture_output=True,
                             text=True, check=False).stdout.strip()
    out.write_text(json.dumps({"registry": version, "image": args.image,
                               "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                               "results": results}, indent=2) + "\n")
    print(f"results: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
