"""Median time per training step (forward + feedback/backward + optimiser) and peak memory, LFP vs BPTT.

    .venv/bin/python benchmarks/bench_step.py                 # all scenarios, all methods available here
    .venv/bin/python benchmarks/bench_step.py --scenarios A B --rounds 5 --repeats 5 --threads 2

Scenarios (the issue's): A spiking MLP 784-1000-1000-10, T=25, batch 128, constant input;
B 700-128-128-20, T=100, batch 64, Bernoulli input spikes (SHD-like; handed to every method as uint8, the
BPTT networks convert each step to float for their Linear layers); C spiking LeNet on 1x28x28, T=25,
batch 128, constant input; R recurrent 700-256(rec)-20, T=100, batch 64, input spikes as in B (lfp-snn's
RecurrentLIF against snntorch's RLeaky); D the paper's deeper-snn (five 3x3 convolutions, lfp_snn.deep) on
3x32x32, T=25, batch 64, constant input (the BPTT networks: lfp_snn.baselines' step networks around the same
layers; a step takes seconds here: use fewer --repeats).
Methods: ``lfp-<backend>[-<option>...]`` with backend torch (reference scans), native (compiled C scans) or
triton (CUDA), options ``bf16`` (feedback GEMMs in bfloat16), ``recompute`` (keep spikes only),
``mb<N>`` (micro-batches of N), ``chunk``/``chunk<K>`` (forward and feedback in stretches of K steps, K = round(√T)
by default; see ``lfp_snn.feedback_result(time_chunk=)``); snntorch BPTT written as its tutorials do (Linear
inside the time loop, fast-sigmoid surrogate slope 25, cross-entropy on spike counts), norse BPTT
(LIFBoxCell, SuperSpike). Every method's step clears the old gradients first, then forward, backward or
feedback, and the Adam step.

Each (scenario, method) runs in its own subprocess, ``--rounds`` times with the methods interleaved in rotated
order (a machine whose speed drifts then favours no method); the table gives the median and the fastest of
all timed steps. Peak memory is the peak of the bytes held by live tensors during one step after warm-up
(parameters, optimiser state, inputs, activations, temporaries): on the CPU from torch's memory profiler
(independent of the allocator's caching), on CUDA ``torch.cuda.max_memory_allocated``. CUDA times use CUDA
events with synchronisation. Prints a Markdown table with ratios against snntorch from the same run and writes
JSON (every step's time) next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

SCENARIOS = {
    "A": dict(arch="mlp", sizes=(784, 1000, 1000, 10), T=25, B=128, input="constant"),
    "B": dict(arch="mlp", sizes=(700, 128, 128, 20), T=100, B=64, input="spikes"),
    "C": dict(arch="lenet", shape=(1, 28, 28), classes=10, T=25, B=128, input="constant"),
    "R": dict(arch="rnn", sizes=(700, 256, 20), T=100, B=64, input="spikes"),
    "D": dict(arch="deeper-snn", shape=(3, 32, 32), classes=10, T=25, B=64, input="constant"),
}
METHODS = (
    "lfp-torch",
    "lfp-native",
    "lfp-native-bf16",
    "lfp-native-recompute",
    "lfp-native-chunk",
    "lfp-native-chunk-bf16",
    "lfp-triton",
    "lfp-triton-chunk",
    "snntorch",
    "norse",
    "rstdp",
)
LFP_OPTIONS = "bf16 | recompute | mb<N> | chunk | chunk<K>"


def lfp_options(method: str, T: int | None = None) -> dict:
    """``lfp-<backend>[-<option>...]`` -> backend and engine options; ``chunk`` alone is K = round(√T)."""
    parts = method.split("-")
    if parts[0] != "lfp" or len(parts) < 2:
        raise ValueError(f"not an LFP method: {method!r}")
    opts = dict(backend=parts[1], matmul_dtype=None, micro_batch=None, recompute=False, time_chunk=None)
    for o in parts[2:]:
        if o == "bf16":
            opts["matmul_dtype"] = "bfloat16"
        elif o == "recompute":
            opts["recompute"] = True
        elif o.startswith("mb") and o[2:].isdigit():
            opts["micro_batch"] = int(o[2:])
        elif o == "chunk":
            opts["time_chunk"] = max(1, round(T**0.5)) if T else "sqrt(T)"
        elif o.startswith("chunk") and o[5:].isdigit():
            opts["time_chunk"] = int(o[5:])
        else:
            raise ValueError(f"unknown option {o!r} in method {method!r}; options: {LFP_OPTIONS}")
    return opts


def method_name(text: str) -> str:
    """argparse type for --methods: the fixed names, or any lfp-<backend>[-<option>...]."""
    if text in METHODS:
        return text
    try:
        lfp_options(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _data(sc, device, torch):
    g = torch.Generator().manual_seed(0)
    shape = (sc["sizes"][0],) if "sizes" in sc else sc["shape"]
    classes = sc["sizes"][-1] if "sizes" in sc else sc["classes"]
    x = torch.rand(sc["B"], *shape, generator=g)
    if sc["input"] == "spikes":  # binary spikes arrive as uint8, as a loader of event data gives them
        x_seq = torch.bernoulli(torch.full((sc["T"], sc["B"], *shape), 0.05), generator=g).to(torch.uint8)
    else:
        x_seq = x.unsqueeze(0).expand(sc["T"], *x.shape)
    y = torch.randint(0, classes, (sc["B"],), generator=g)
    return x_seq.to(device), y.to(device), classes


def _lfp_model(sc, backend):
    from torch import nn

    import lfp_snn

    lif = lambda: lfp_snn.LIF(0.9, 1.0, backend=backend)  # noqa: E731
    if sc["arch"] == "mlp":
        s = sc["sizes"]
        layers = [nn.Linear(s[0], s[1]), lif(), nn.Linear(s[1], s[2]), lif(), nn.Linear(s[2], s[3]), lif()]
    elif sc["arch"] == "deeper-snn":
        from lfp_snn.deep import deeper_snn

        return deeper_snn(sc["shape"], sc["classes"], lif)
    elif sc["arch"] == "rnn":  # the recurrent layer's scans are torch code whatever the backend
        s = sc["sizes"]
        layers = [nn.Linear(s[0], s[1]), lfp_snn.RecurrentLIF(s[1], 0.9, 1.0), nn.Linear(s[1], s[2]), lif()]
    else:
        layers = [
            nn.Conv2d(1, 12, 5),
            lif(),
            nn.MaxPool2d(2),
            nn.Conv2d(12, 64, 5),
            lif(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, sc["classes"]),
            lif(),
        ]
    return lfp_snn.SpikingSequential(*layers)


def _loop_model(sc, T, make_neuron, initial_state):
    """The scenario's network written as the BPTT libraries' tutorials do: every layer inside the time loop,
    a library neuron after each, called as ``neuron(current, state) -> (spikes, state)``."""
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            if sc["arch"] == "mlp":
                s = sc["sizes"]
                self.layers = nn.ModuleList(
                    [nn.Linear(s[0], s[1]), nn.Linear(s[1], s[2]), nn.Linear(s[2], s[3])]
                )
                self.pre = [None, None, None]
            else:
                self.layers = nn.ModuleList(
                    [nn.Conv2d(1, 12, 5), nn.Conv2d(12, 64, 5), nn.Linear(1024, sc["classes"])]
                )
                self.pre = [None, nn.MaxPool2d(2), lambda v: nn.functional.max_pool2d(v, 2).flatten(1)]
            self.neurons = nn.ModuleList([make_neuron() for _ in self.layers])

        def forward(self, x_seq):
            states = [initial_state(n) for n in self.neurons]
            out = []
            for t in range(T):
                h = x_seq[t]
                if not h.is_floating_point():  # uint8 spikes: nn.Linear needs floats
                    h = h.float()
                for i, (layer, neuron) in enumerate(zip(self.layers, self.neurons)):
                    if self.pre[i] is not None:
                        h = self.pre[i](h)
                    h, states[i] = neuron(layer(h), states[i])
                out.append(h)
            return torch.stack(out)

    return Net()


def _snntorch_model(sc, T):
    """snn.Leaky with the fast-sigmoid surrogate (slope 25), explicit membrane from init_leaky(); for the
    recurrent scenario snn.RLeaky (all-to-all) in the hidden layer, as its tutorial builds it."""
    import snntorch as snn
    from snntorch import surrogate

    grad = surrogate.fast_sigmoid(slope=25)
    if sc["arch"] == "rnn":
        return _snntorch_rnn(sc, T, grad)
    if sc["arch"] == "deeper-snn":
        from lfp_snn.baselines.snntorch_bptt import SnnTorchNetwork

        return SnnTorchNetwork(_lfp_model(sc, "torch"))
    return _loop_model(sc, T, lambda: snn.Leaky(beta=0.9, spike_grad=grad), lambda lif: lif.init_leaky())


def _snntorch_rnn(sc, T, grad):
    import snntorch as snn
    import torch
    from torch import nn

    s = sc["sizes"]

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(s[0], s[1]), nn.Linear(s[1], s[2])
            self.rlif = snn.RLeaky(beta=0.9, linear_features=s[1], spike_grad=grad)
            self.lif = snn.Leaky(beta=0.9, spike_grad=grad)

        def forward(self, x_seq):
            spk, mem = self.rlif.init_rleaky()
            mem2 = self.lif.init_leaky()
            out = []
            for t in range(T):
                h = x_seq[t].float()
                spk, mem = self.rlif(self.fc1(h), spk, mem)
                o, mem2 = self.lif(self.fc2(spk), mem2)
                out.append(o)
            return torch.stack(out)

    return Net()


def _norse_model(sc, T):
    """norse's LIFBoxCell with SuperSpike, state starting at None (not for the recurrent scenario)."""
    import torch
    from norse.torch import LIFBoxCell, LIFBoxParameters

    if sc["arch"] == "rnn":
        raise ValueError("the recurrent scenario R compares with snntorch's RLeaky only")
    if sc["arch"] == "deeper-snn":
        from lfp_snn.baselines.norse_bptt import NorseNetwork

        return NorseNetwork(_lfp_model(sc, "torch"))

    p = LIFBoxParameters(
        tau_mem_inv=torch.tensor(100.0), v_th=torch.tensor(1.0), method="super", alpha=torch.tensor(100.0)
    )
    return _loop_model(sc, T, lambda: LIFBoxCell(p), lambda cell: None)


def run_one(
    scenario: str, method: str, repeats: int, warmup: int, device_name: str, memory: bool = True
) -> dict:
    import torch

    import lfp_snn
    from lfp_snn.experiments.memory import tensor_peak_mib

    device = torch.device(device_name)
    sc = SCENARIOS[scenario]
    x_seq, y, classes = _data(sc, device, torch)
    if method.startswith("lfp"):
        o = lfp_options(method, sc["T"])
        model = _lfp_model(sc, o["backend"]).to(device)
        matmul_dtype = getattr(torch, o["matmul_dtype"]) if o["matmul_dtype"] else None
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def step():
            opt.zero_grad(set_to_none=True)
            res = lfp_snn.feedback_result(
                model,
                x_seq,
                y,
                "sequence",
                "epsilon",
                matmul_dtype=matmul_dtype,
                micro_batch=o["micro_batch"],
                recompute=o["recompute"],
                time_chunk=o["time_chunk"],
            )
            lfp_snn.write_gradients(model, res.feedback, consume=True)
            opt.step()
    elif method == "rstdp":  # the gradient-free baseline on the same lfp-snn model (torch scans)
        from lfp_snn.baselines.rstdp import RSTDP, rstdp_options

        model = _lfp_model(sc, "torch").to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
        learner = RSTDP(model, rstdp_options({}))

        def step():
            opt.zero_grad(set_to_none=True)
            learner.step(x_seq, y)
            opt.step()
    else:
        model = (_snntorch_model if method == "snntorch" else _norse_model)(sc, sc["T"]).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)

        def step():
            opt.zero_grad()
            out = model(x_seq)
            loss = torch.nn.functional.cross_entropy(out.sum(0), y)
            loss.backward()
            opt.step()

    cuda = device.type == "cuda"
    for _ in range(max(warmup, 1)):  # loads libraries and allocates the optimiser state
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeats):
        if cuda:
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            step()
            b.record()
            torch.cuda.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
        else:
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    peak = None
    if memory:
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else tensor_peak_mib(step)
    return {"scenario": scenario, "method": method, "times_ms": [t * 1e3 for t in times], "peak_mb": peak}


def available(method: str, device: str) -> str | None:
    """None when the method runs here, else the reason it does not."""
    try:
        if method.startswith("lfp-"):
            from lfp_snn.kernels import check_backend

            check_backend(lfp_options(method)["backend"], device)
        elif method == "snntorch":
            import snntorch  # noqa: F401
        elif method == "norse":
            import norse  # noqa: F401
    except Exception as e:  # noqa: BLE001
        return str(e).splitlines()[0]
    if method.startswith("lfp-triton") and device == "cpu":
        return "Triton is the CUDA path (the interpreter on the CPU is for tests, not timing)"
    return None


def _skip(sc: str, m: str, device: str, skipped: list) -> bool:
    why = available(m, device)
    if not why and m == "norse" and SCENARIOS[sc]["arch"] == "rnn":
        why = "the recurrent scenario compares with snntorch's RLeaky only"
    if not why and m == "rstdp" and SCENARIOS[sc]["arch"] == "rnn":
        why = "R-STDP trains feed-forward LIF networks only"
    if why:
        skipped.append((sc, m, why))
    return bool(why)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        type=method_name,
        help=f"{', '.join(METHODS)}, or any lfp-<backend>[-<option>...] with options {LFP_OPTIONS}",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=3, help="runs of every method, interleaved")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads, pinned in every subprocess")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results/bench_step.json")
    p.add_argument("--one", nargs=2, metavar=("SCENARIO", "METHOD"), help=argparse.SUPPRESS)
    p.add_argument("--no-memory", action="store_true", help=argparse.SUPPRESS)
    p.add_argument(
        "--allocator",
        default="retain",
        choices=("retain", "default"),
        help="for every method: keep freed memory for reuse (lfp-snn's default) or glibc's own behaviour",
    )
    a = p.parse_args(argv)
    if a.one:
        import torch

        if a.allocator == "retain":
            from lfp_snn.allocator import retain_freed_memory

            retain_freed_memory()
        torch.set_num_threads(a.threads)
        print(json.dumps(run_one(a.one[0], a.one[1], a.repeats, a.warmup, a.device, not a.no_memory)))
        return 0
    # glibc's allocator is left at its defaults: forcing mmap for large blocks (to make the resident set follow
    # the live tensors) turns every buffer into fresh page faults and slowed the methods with many
    # medium-sized buffers by up to 3x; memory is taken from torch's profiler instead
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    rows, skipped = [], []
    load_before = os.getloadavg()
    results: dict[tuple[str, str], dict] = {}
    for sc in a.scenarios:
        methods = [m for m in a.methods if not _skip(sc, m, a.device, skipped)]
        # rounds with the methods in rotated order: a machine whose speed drifts over minutes then biases no
        # method; memory is measured in the first round only
        for rnd in range(a.rounds):
            k = rnd % max(len(methods), 1)
            for m in methods[k:] + methods[:k]:
                if (sc, m) in results and results[(sc, m)].get("failed"):
                    continue
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    sc,
                    m,
                    "--repeats",
                    str(a.repeats),
                    "--warmup",
                    str(a.warmup),
                    "--threads",
                    str(a.threads),
                    "--device",
                    a.device,
                ]
                cmd += ["--allocator", a.allocator]
                if rnd > 0:
                    cmd.append("--no-memory")
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                if out.returncode != 0:
                    skipped.append((sc, m, out.stderr.strip().splitlines()[-1] if out.stderr else "failed"))
                    results[(sc, m)] = {"failed": True}
                    continue
                one = json.loads(out.stdout.strip().splitlines()[-1])
                r = results.setdefault(
                    (sc, m), {"scenario": sc, "method": m, "times_ms": [], "peak_mb": None}
                )
                r["times_ms"] += one["times_ms"]
                if one["peak_mb"] is not None:
                    r["peak_mb"] = one["peak_mb"]
                print(
                    f"  round {rnd + 1}/{a.rounds} {sc} {m}: "
                    f"{statistics.median(one['times_ms']):.1f} ms/step",
                    flush=True,
                )
    for key in sorted(results, key=lambda k: (a.scenarios.index(k[0]), a.methods.index(k[1]))):
        r = results[key]
        if r.get("failed"):
            continue
        r.update(
            median_ms=statistics.median(r["times_ms"]),
            min_ms=min(r["times_ms"]),
            steps=len(r["times_ms"]),
        )
        rows.append(r)
    load_after = os.getloadavg()
    ref = {r["scenario"]: r for r in rows if r["method"] == "snntorch"}
    lines = [
        "| scenario | method | median ms/step | min ms/step | speed-up vs snntorch | peak MB | memory vs snntorch |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = ref.get(r["scenario"])
        sp = f"{s['median_ms'] / r['median_ms']:.2f}x" if s else "-"
        mem = f"{r['peak_mb'] / s['peak_mb']:.2f}" if s and s["peak_mb"] > 0 else "-"
        lines.append(
            f"| {r['scenario']} | {r['method']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | {sp} | {r['peak_mb']:.0f} | {mem} |"
        )
    table = "\n".join(lines)
    import torch

    meta = {
        "device": a.device,
        "threads": a.threads,
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_before": load_before,
        "loadavg_after": load_after,
        "repeats": a.repeats,
        "rounds": a.rounds,
        "allocator": a.allocator,
        "memory": "CUDA max_memory_allocated"
        if a.device == "cuda"
        else "peak bytes of live CPU tensors during one step (torch memory profiler): parameters, optimiser state, inputs, activations, temporaries",
    }
    print(table)
    print(
        f"\nthreads={a.threads}, device={a.device}, allocator={a.allocator}, load average before {load_before[0]:.2f} / after "
        f"{load_after[0]:.2f}; memory: {meta['memory']}"
    )
    for sc, m, why in skipped:
        print(f"skipped {sc} {m}: {why}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(
        json.dumps({"meta": meta, "rows": rows, "skipped": skipped, "table": table}, indent=2)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
