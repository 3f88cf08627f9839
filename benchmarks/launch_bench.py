"""Launch overhead and batch-infer throughput, each against a baseline measured in the same run.

1. `rayctl launch` of a trivial user-code recipe vs plain `ray job submit` of the same
   script with the same working_dir, both on the same, already running local cluster
   (wall time of the whole command, median of --repeat alternating runs). Goal: <= 1.3x.
2. Batch-infer rows/s and tokens/s of the built-in runner vs a hand-written
   single-process loop over the same data and model (goal >= 0.8x): runs
   benchmarks/batch_infer_bench.py on the same cluster (see `batch_infer_section`).

Usage: python benchmarks/launch_bench.py [--repeat 5] [--keep-cluster] [--skip-batch]

It uses its own RAYCTL_HOME under /tmp and stops the local cluster it started at the
end (only that cluster's processes) unless --keep-cluster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPT = 'print("hello from a trivial job")\n'
RECIPE = """name: bench-trivial
kind: batch-infer
workload:
  entrypoint: python trivial.py
  working_dir: code
"""


def _run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n"
                         f"{proc.stderr[-2000:]}")
    return took


def launch_overhead(home: Path, repeat: int) -> dict:
    from rayctl.providers import local

    work = home / "bench"
    (work / "code").mkdir(parents=True, exist_ok=True)
    (work / "code" / "trivial.py").write_text(SCRIPT)
    recipe = work / "trivial.yaml"
    recipe.write_text(RECIPE)

    cluster = local.ensure_cluster()
    env = dict(os.environ, RAYCTL_HOME=str(home), RAY_AUTH_MODE="disabled")
    rayctl_cmd = [sys.executable, "-m", "rayctl", "launch", str(recipe), "--quiet"]
    ray_cmd = [sys.executable, "-m", "ray.scripts.scripts", "job", "submit", "--address", cluster.address,
               "--working-dir", str(work / "code"), "--", "python", "trivial.py"]
    # Warm-up: the working_dir package is uploaded once (content-addressed) and cached.
    _run(ray_cmd, env)
    _run(rayctl_cmd, env)
    ours, theirs = [], []
    for i in range(repeat):
        pair = [(rayctl_cmd, ours), (ray_cmd, theirs)]
        if i % 2:
            pair.reverse()
        for cmd, out in pair:
            out.append(_run(cmd, env))
    return {"address": cluster.address, "rayctl_s": ours, "ray_job_submit_s": theirs,
            "rayctl_median_s": statistics.median(ours), "ray_median_s": statistics.median(theirs)}


# ---------------------------------------------------------------------------------------------
# 2. BATCH-INFER THROUGHPUT — the workloads owner's benchmarks/batch_infer_bench.py, run on the
#    same cluster in this same run. It compares the built-in runner with a hand-written
#    single-process loop over the same data and model (goal: runner >= 0.8x the loop) and says
#    where the rest of the time goes.
# ---------------------------------------------------------------------------------------------
def batch_infer_section(address: str) -> int | None:
    script = Path(__file__).resolve().parent / "batch_infer_bench.py"
    if not script.exists():
        return None
    print(f"\nbatch-infer throughput ({script.name} --address {address}):", flush=True)
    return subprocess.run([sys.executable, str(script), "--address", address], timeout=3600).returncode


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--keep-cluster", action="store_true", help="leave the local cluster running")
    ap.add_argument("--skip-batch", action="store_true", help="only the launch-overhead half")
    args = ap.parse_args()

    own_home = not os.environ.get("RAYCTL_BENCH_HOME")
    home = Path(os.environ.get("RAYCTL_BENCH_HOME") or tempfile.mkdtemp(prefix="rayctl-launch-bench-", dir="/tmp"))
    os.environ["RAYCTL_HOME"] = str(home)
    os.environ.pop("RAYCTL_LOCAL_CLUSTER_DIR", None)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from rayctl.providers import local

    from rayctl.errors import RayctlError

    had_cluster = local.read_state() is not None and local.healthy(local.read_state())
    try:
        try:
            r = launch_overhead(home, args.repeat)
        except RayctlError as e:
            raise SystemExit(f"launch_bench: {e}") from None
        print(f"launch overhead on {r['address']} ({args.repeat} alternating runs each, wall time of the command):")
        print(f"  rayctl launch      median {r['rayctl_median_s']:.2f} s   runs: "
              + ", ".join(f"{x:.2f}" for x in r["rayctl_s"]))
        print(f"  ray job submit     median {r['ray_median_s']:.2f} s   runs: "
              + ", ".join(f"{x:.2f}" for x in r["ray_job_submit_s"]))
        ratio = r["rayctl_median_s"] / r["ray_median_s"]
        print(f"  ratio rayctl / ray job submit = {ratio:.2f}x (goal <= 1.3x): {'OK' if ratio <= 1.3 else 'MISSED'}")
        if not args.skip_batch:
            rc = batch_infer_section(r["address"])
            if rc is None:
                print("batch-infer throughput: benchmarks/batch_infer_bench.py is not in this checkout")
            elif rc != 0:
                raise SystemExit(f"batch_infer_bench.py failed (exit {rc})")
    finally:
        if not args.keep_cluster and not had_cluster:
            local.stop_cluster()
            if own_home:
                import shutil

                shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
