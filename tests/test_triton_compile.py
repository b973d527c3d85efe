"""The Triton kernels compile for a GPU (sm_90) without one: the interpreter tests check the arithmetic, this
checks that what the interpreter accepts also goes through Triton's real compiler down to a cubin."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

# not imported here: the interpreter tests must be the first to import triton (with TRITON_INTERPRET=1)
if importlib.util.find_spec("triton") is None:
    pytest.skip("the Triton kernels need the triton package (pip install triton)", allow_module_level=True)

pytestmark = pytest.mark.triton

SCRIPT = textwrap.dedent(
    """
    import inspect, json, sys
    import triton
    import triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from lfp_snn.kernels import triton_scan as ts

    fwd, fb, rnd, load = ts._kernels()
    DT = {"fp32": ("*fp32", tl.float32, 0), "fp64": ("*fp64", tl.float64, 0), "bf16": ("*bf16", tl.float32, 2),
          "fp16": ("*fp16", tl.float32, 1)}

    def build(kernel, raw, pointers, scalars, consts):
        params = list(inspect.signature(raw).parameters)
        sig = {**pointers, **scalars, **{k: "constexpr" for k in consts}}
        src = ASTSource(fn=kernel, signature=sig, constexprs={(params.index(k),): v for k, v in consts.items()})
        return triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"enable_fp_fusion": False})

    out = []
    for case in json.loads(sys.argv[1]):
        ptr, cdt, rounding = DT[case["dtype"]]
        common = dict(BETA_VEC=case["vec"], THR_VEC=not case["vec"], HAS_MEM0=case["mem0"],
                      SUBTRACT=case["subtract"], DELAY=case["delay"], ROUND=rounding, RND=rnd, LOAD=load,
                      CDT=cdt, BLOCK=256)
        if case["kernel"] == "forward":
            spk = "*u8" if case["byte_spikes"] else ptr
            k = build(fwd, ts._lif_forward_kernel,
                      dict(cur_ptr=ptr, beta_ptr=ptr, thr_ptr=ptr, mem0_ptr=ptr, spk_ptr=spk, pot_ptr=ptr),
                      dict(M="i32", T="i32"),
                      dict(CONSTANT=case["constant"], SPK_FLOAT=not case["byte_spikes"], **common))
        else:
            k = build(fb, ts._lif_feedback_kernel,
                      dict(rew_ptr=ptr, pot_ptr=ptr, beta_ptr=ptr, thr_ptr=ptr, mem0_ptr=ptr, eps_ptr=ptr, g_ptr=ptr),
                      dict(M="i32", LAST="i64", T="i32"),
                      dict(WIDE=case["dtype"] == "fp64", **common))
        ptx = k.asm["ptx"]
        out.append({"cubin": len(k.asm.get("cubin", b"")), "fma": ptx.count("fma.rn")})
    print(json.dumps(out))
    """
)

CASES = [
    dict(
        kernel="forward",
        dtype="fp32",
        vec=True,
        mem0=True,
        subtract=True,
        delay=True,
        constant=False,
        byte_spikes=True,
    ),
    dict(
        kernel="forward",
        dtype="fp64",
        vec=False,
        mem0=False,
        subtract=False,
        delay=False,
        constant=True,
        byte_spikes=False,
    ),
    dict(
        kernel="forward",
        dtype="bf16",
        vec=True,
        mem0=False,
        subtract=True,
        delay=False,
        constant=False,
        byte_spikes=False,
    ),
    dict(kernel="feedback", dtype="fp32", vec=True, mem0=True, subtract=True, delay=True),
    dict(kernel="feedback", dtype="fp64", vec=False, mem0=False, subtract=False, delay=True),
    dict(kernel="feedback", dtype="fp16", vec=True, mem0=True, subtract=False, delay=False),
]


@pytest.mark.slow  # ~1-2 s of compiling per variant
def test_kernels_compile_for_sm90_without_fma_contraction():
    env = {**os.environ, "TRITON_INTERPRET": "0"}
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(CASES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(results) == len(CASES)
    for case, r in zip(CASES, results):
        assert r["cubin"] > 0, case  # ptxas produced GPU code
        assert r["fma"] == 0, case  # no fused multiply-add: the reference's rounding, step by step
