"""Where one training epoch's time goes, from XLA's own per-operation trace.

Runs in a fresh process (the tracing flag must be set before JAX starts): compiles the
epoch of a config, runs one epoch to warm up, traces the next with `jax.profiler`, and sums
the time of each XLA operation. Operations whose HLO holds a `dot` are matrix multiplies;
the rest is grouped by where XLA's metadata says it came from: the model's forward and
backward passes (elementwise work: activations, the likelihood), loops nested in the step
(on CPU, JAX's threefry random-number generator runs as a loop), and the remainder
(optimizer update, data gathering and preprocessing, copies).

    python benchmarks/epoch_profile.py [experiments/bench_mlp.py] [--json]

The total is the sum of the operations' own times: it leaves out the gaps between them
and adds the tracing's overhead, so it differs from an untraced epoch's time by a few
percent either way (one run: 2.52 s traced, 2.74 s median untraced).
"""

from __future__ import annotations

import collections
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"
_CONTAINERS = re.compile(r"^(\$|ThunkExecutor|while|conditional|call$|PjitFunction|TaskDispatcher|"
                         r"Slinky|np\.|backend|PjRt|Cpu|Codegen|JitCompiler|Fusion)")


def matmul_ops(hlo_text: str) -> set[str]:
    """Names of the instructions that are dots, or fusions whose computation has a dot."""
    computations_with_dot, current = set(), None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%?([\w.\-]+) \(.*\) -> .* \{$", line)
        if header:
            current = header.group(1)
        elif current and re.search(r"\s(dot|convolution)\(", line):
            computations_with_dot.add(current)
    ops = set()
    for m in re.finditer(r"%([\w.\-]+) = [^\n]*?\b(dot|convolution)\(", hlo_text):
        ops.add(m.group(1))
    for m in re.finditer(r"%([\w.\-]+) = [^\n]*? fusion\([^\n]*calls=%([\w.\-]+)", hlo_text):
        if m.group(2) in computations_with_dot:
            ops.add(m.group(1))
    return ops


def origin(op_name: str) -> str:
    """The group of a non-matmul operation, from its `op_name` metadata."""
    if "jvp(" in op_name or "transpose(" in op_name:
        return "model_elementwise"
    if op_name.count("/while/") >= 2:
        return "nested_loops"
    return "optimizer_data_copies"


def summarize(trace_file, hlo_text: str) -> dict:
    """Seconds of the traced epoch in matrix multiplies and in each group of other work."""
    events = json.load(gzip.open(trace_file))
    events = events["traceEvents"] if isinstance(events, dict) else events
    per_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and not _CONTAINERS.match(e["name"]):
            per_op[e["name"].removeprefix("end: ")] += e.get("dur", 0) / 1e6
    dots = matmul_ops(hlo_text)
    op_names = dict(re.findall(r'%([\w.\-]+) = [^\n]*op_name="([^"]*)"', hlo_text))
    groups = collections.Counter({"matmul": 0.0, "model_elementwise": 0.0, "nested_loops": 0.0,
                                  "optimizer_data_copies": 0.0})
    for op, seconds in per_op.items():
        groups["matmul" if op in dots else origin(op_names.get(op, ""))] += seconds
    return {f"{group}_s": round(seconds, 3) for group, seconds in groups.items()}


def _profile_here(config_path: str) -> dict:
    import jax  # noqa: PLC0415
    import jax.numpy as jnp  # noqa: PLC0415

    from vaejax import config as config_lib  # noqa: PLC0415
    from vaejax.data import load_splits  # noqa: PLC0415
    from vaejax.program import Program  # noqa: PLC0415

    config = config_lib.load_config(REPO / config_path)
    splits = load_splits(config, log=lambda *_: None)
    program = Program.build(config, splits.train.images.shape[1:], splits.train.images.shape[0])
    hyper = program.hyper(config)
    state = jax.jit(program.init_state)(hyper)
    epoch = jax.jit(program.train_epoch, donate_argnums=0).lower(
        state, hyper, splits.train, jnp.int32(0)).compile()
    state, _ = epoch(state, hyper, splits.train, jnp.int32(0))
    jax.block_until_ready(state)
    with tempfile.TemporaryDirectory() as tmp:
        jax.profiler.start_trace(tmp, create_perfetto_trace=True)
        state, _ = epoch(state, hyper, splits.train, jnp.int32(1))
        jax.block_until_ready(state)
        jax.profiler.stop_trace()
        trace = next(pathlib.Path(tmp).rglob("perfetto_trace.json.gz"))
        return summarize(trace, epoch.as_text())


def profile(config_path: str = "experiments/bench_mlp.py") -> dict:
    """`_profile_here` in a fresh process with XLA's per-operation tracing switched on."""
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {TRACE_FLAG}".strip())
    out = subprocess.run([sys.executable, __file__, config_path, "--json"], env=env, cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--json"]
    path = args[0] if args else "experiments/bench_mlp.py"
    if TRACE_FLAG not in os.environ.get("XLA_FLAGS", ""):
        result = profile(path)
    else:
        result = _profile_here(path)
    if "--json" in sys.argv:
        print(json.dumps(result))
    else:
        print(f"{path}, one epoch traced:")
        for group, seconds in result.items():
            print(f"  {seconds:6.3f} s  {group.removesuffix('_s')}")
