"""One rank of the all-reduce check; started by checks_dist, one process per GPU.

Reads RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, SMOKE_DIST_BACKEND,
SMOKE_DIST_DEVICE and SMOKE_DIST_BYTES; prints one line 'SMOKE_RESULT {json}'.
"""

from __future__ import annotations

import datetime
import json
import os
import statistics
import time

RESULT_PREFIX = "SMOKE_RESULT "


def main() -> None:
    import torch
    import torch.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    backend = os.environ["SMOKE_DIST_BACKEND"]
    on_gpu = os.environ["SMOKE_DIST_DEVICE"] == "cuda"
    nbytes = int(os.environ["SMOKE_DIST_BYTES"])
    timeout = datetime.timedelta(seconds=int(os.environ.get("SMOKE_DIST_TIMEOUT", "120")))
    if on_gpu:
        torch.cuda.set_device(rank)
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, rank=rank, world_size=world, timeout=timeout)

    def sync() -> None:
        if on_gpu:
            torch.cuda.synchronize()

    small = torch.full((4096,), float(rank + 1), device=device)
    dist.all_reduce(small)
    big = torch.ones(nbytes // 4, dtype=torch.float32, device=device)
    dist.all_reduce(big)
    sync()
    result = {
        "rank": rank,
        "world": world,
        "min": small.min().item(),
        "max": small.max().item(),
        "big_min": big.min().item(),
        "big_max": big.max().item(),
    }
    times = []
    for i in range(7):
        dist.barrier()
        sync()
        began = time.perf_counter()
        dist.all_reduce(big)
        sync()
        if i >= 2:  # the first rounds are warm-up
            times.append(time.perf_counter() - began)
        big.fill_(1.0)
    seconds = statistics.median(times)
    result["bytes"] = nbytes
    result["seconds"] = seconds
    result["algbw_gbps"] = nbytes / seconds / 1e9
    result["busbw_gbps"] = result["algbw_gbps"] * 2 * (world - 1) / world
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
