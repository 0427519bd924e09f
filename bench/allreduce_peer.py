"""The peer of `rlhf dist-check`: PyTorch's own all-reduce (torch.distributed, Gloo) of the same
float32 sizes, timed the same way (50 warm-up, then the median of N), under torchrun.
Prints one line per size on rank 0: `peer <bytes> <median ms>`."""
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist


def main():
    sizes = [int(x) for x in sys.argv[1].split(",")]
    iterations = int(sys.argv[2])
    dist.init_process_group("gloo")
    for nbytes in sizes:
        t = torch.ones(max(1, nbytes // 4))
        ms = []
        for i in range(50 + iterations):
            t0 = time.perf_counter()
            dist.all_reduce(t)
            dt = (time.perf_counter() - t0) * 1e3
            if i >= 50:
                ms.append(dt)
        if dist.get_rank() == 0:
            print(f"peer {t.numel() * 4} {statistics.median(ms):.3f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
