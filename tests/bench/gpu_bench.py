"""`make bench-gpu`: the roi_core table on a GPU, with torchvision's CUDA ops as the peer when
torch and torchvision are installed. On a machine without a GPU it says so and times the CPU."""
from __future__ import annotations

import tensorflow as tf

from tests.bench.core_bench import WORKLOADS, median_ms, op_functions, output_write_floor, workload


def _torchvision_peer(feats, boxes, scale):
    """Median ms of torchvision's CUDA roi_pool / roi_align on the same data (NCHW), or None."""
    try:
        import torch
        from torchvision.ops import roi_align as tv_align, roi_pool as tv_pool
    except Exception:  # noqa: BLE001 - an optional peer: any import failure means "not here"
        return None
    if not torch.cuda.is_available():
        return None
    x = torch.from_numpy(feats.numpy()).permute(0, 3, 1, 2).contiguous().cuda()
    b = torch.from_numpy(boxes.numpy()).cuda()

    def timed(fn):
        def call():
            out = fn()
            torch.cuda.synchronize()
            return out.cpu().numpy()

        return median_ms(call)

    return {
        "pool": timed(lambda: tv_pool(x, b, 7, scale)),
        "align": timed(lambda: tv_align(x, b, 7, scale, -1, False)),
        "align2": timed(lambda: tv_align(x, b, 7, scale, 2, False)),
    }


def run():
    gpus = tf.config.list_physical_devices("GPU")
    device = "/GPU:0" if gpus else "/CPU:0"
    print(f"\nroi_core GPU benchmark on {device}" + ("" if gpus else " (no GPU visible: timing the CPU instead)"))
    for name in WORKLOADS:
        with tf.device(device):
            feats, boxes, scale = workload(name)
            k = boxes.shape[0]
            fns = op_functions(scale)
            times = {op: median_ms(fn, feats, boxes) for op, fn in fns.items()}
            floor = median_ms(output_write_floor(feats, k), feats)
        peer = _torchvision_peer(feats, boxes, scale) if gpus else None
        print(f"\n{name}")
        print(f"  output-write floor {floor:8.2f} ms")
        for op, label in (("pool", "roi_pool"), ("align", "roi_align (adaptive)"), ("align2", "roi_align sr=2")):
            line = f"  {label:22s} {times[op]:8.2f} ms   {times[op] / floor:6.2f}x floor"
            if peer is not None:
                line += f"   torchvision CUDA {peer[op]:8.2f} ms ({peer[op] / floor:6.2f}x floor)"
            print(line)
        if gpus and peer is None:
            print("  (torch + torchvision with CUDA not installed: no peer)")


if __name__ == "__main__":
    run()
