"""The fused pass over S^{W_x} in C (``sensitivity_pass.c``), built by the system's C compiler on first use.

The pass reads each row of S once and writes it once, accumulating the history gradient and writing S_T in
the same sweep (docs/DESIGN.md §8); the PyTorch form (``rtrl.cells.sensitivity_pass``) does the same in
cache-sized chunks with a few operations per chunk, and is what runs wherever this one cannot: no C
compiler, a CUDA tensor, a layout it does not take, or ``RTRL_NATIVE=0`` in the environment. Both give the
same numbers (tests/cells/test_native_pass.py); ``status()`` says which one this process uses and why.

The library is compiled once per source version into ``$RTRL_CACHE_DIR`` (default ``~/.cache/rtrl``),
by ``make install`` or else by the first call that wants it (about a second); plain C99 and POSIX threads,
no Python headers, so nothing but ``cc`` is needed.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("sensitivity_pass.c")
# the pass computes the local term Σ_t lhs ⊗ x row by row: for longer segments a GEMM (the PyTorch path) wins
MAX_T = 4
# below this many elements of S one thread does the pass: a second thread competes with PyTorch's own pool,
# whose threads spin between operations, and was measured slower up to N = 128 (B = 32, D = 257); above it
# (N = 512: 8.4M elements) the two threads' bandwidth wins a little
THREAD_MIN_ELEMENTS = 1 << 23

_state: dict = {}


def cache_dir() -> Path:
    return Path(os.environ.get("RTRL_CACHE_DIR") or Path.home() / ".cache" / "rtrl")


def _library_path() -> Path:
    # the machine's architecture too: a home directory shared by x86-64 and arm64 nodes keeps one library each
    digest = hashlib.sha256(SOURCE.read_bytes() + f"{sys.platform} {platform.machine()}".encode()).hexdigest()[:16]
    return cache_dir() / f"sensitivity_pass-{digest}.so"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def build() -> Path:
    """Compile the library into the cache (atomically: concurrent builders do not see a half-written file)."""
    path = _library_path()
    if path.exists():
        return path
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C compiler found (tried $CC, cc, gcc, clang)")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    try:
        result = subprocess.run([compiler, "-O3", "-std=c99", "-fPIC", "-shared", "-pthread", "-o", tmp, str(SOURCE)],
                                capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise OSError(f"{compiler} failed: {result.stderr.strip()[-500:]}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _load():
    if "lib" in _state:
        return _state["lib"]
    lib, reason = None, "the C pass is in use"
    if os.environ.get("RTRL_NATIVE", "1") == "0":
        reason = "RTRL_NATIVE=0: the PyTorch pass is in use"
    else:
        try:
            lib = ctypes.CDLL(str(build()))
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            for name in ("rtrl_pass_f32", "rtrl_pass_f64"):
                fn = getattr(lib, name)
                real = ctypes.c_float if name.endswith("f32") else ctypes.c_double
                fn.argtypes = [i64] * 5 + [ptr] * 8 + [i64, ptr, ptr, real, i64, ctypes.c_int]
                fn.restype = ctypes.c_int
        except (OSError, subprocess.SubprocessError) as exc:
            lib, reason = None, f"the C pass could not be built ({exc}); the PyTorch pass is in use"
    _state.update(lib=lib, reason=reason)
    return lib


def status() -> str:
    """Which pass over S this process uses, and why."""
    _load()
    return _state["reason"]


def available() -> bool:
    return _load() is not None


def _ptr(t: Tensor | None):
    return None if t is None else t.data_ptr()


def weight_x_pass(s0: Tensor, e0: Tensor | None, grad: Tensor | None, P0: Tensor | None, Q0: Tensor | None,
                  lhs: Tensor | None, x: Tensor | None, out: Tensor | None,
                  folds: list[tuple[Tensor, list[Tensor]]] = (), decay: float = 1.0) -> bool:
    """The pass over S^{W_x} (B,K,N,D) in C, if it takes these tensors; False (nothing done) if not.

    grad (K,N,D) += Σ_b e0 ⊙ S_0 (e0 (B,N)); out = P0 ⊙ S_0 (+ Q0 ⊙ swap(S_0)) + lhs @ x with lhs (B,K·N,T)
    and x (B,T,D); ``out`` may be ``s0`` itself. Each fold (c (B,N), [z_b (K,N,D) for each b]) updates the
    traces z_b ← decay · z_b + c[b] ⊙ S_0[b] in the same pass (a streaming learner's eligibility traces); for a
    paired cell (``Q0``) z_b may be (K,N/2,D), parameter row n taking the terms of state rows n and N/2 + n."""
    dtype = s0.dtype
    if not s0.is_cpu or (dtype is not torch.float32 and dtype is not torch.float64) or s0.dim() != 4:
        return False
    lib = _load()
    if lib is None:   # before the copies below: they would be wasted on the PyTorch pass
        return False
    B, K, N, D = s0.shape
    T = 0
    if out is not None:
        T = x.shape[1]
        if T > MAX_T:
            return False
        lhs, x = lhs.contiguous(), x.contiguous()
    fold_tensors = [t for coef, traces in folds for t in (coef, *traces)]
    for t in (s0, e0, grad, P0, Q0, lhs, x, out, *fold_tensors):   # a plain loop: this runs at every streaming step
        if t is not None and (t.dtype is not dtype or not t.is_cpu or not t.is_contiguous()):
            return False
    # a paired cell's traces (Q0 given, S_T written) may be half of S[b]: parameter row n takes state rows n, N/2 + n
    half = bool(folds) and Q0 is not None and out is not None and all(
        z.numel() * 2 == K * N * D for _, traces in folds for z in traces)
    size = K * N * D // 2 if half else K * N * D
    if any(len(traces) != B or any(z.numel() != size for z in traces) or tuple(coef.shape) != (B, N)
           for coef, traces in folds):
        return False
    fn = lib.rtrl_pass_f32 if dtype is torch.float32 else lib.rtrl_pass_f64
    threads = torch.get_num_threads() if s0.numel() >= THREAD_MIN_ELEMENTS else 1
    coefs = pointers = None
    if folds:
        coefs = torch.stack([coef for coef, _ in folds])   # (F,B,N): a small copy
        pointers = (ctypes.c_void_p * (len(folds) * B))(*(z.data_ptr() for _, traces in folds for z in traces))
    code = fn(B, K * N, D, N, T, _ptr(s0), _ptr(out), _ptr(e0), _ptr(grad), _ptr(P0), _ptr(Q0),
              _ptr(lhs), _ptr(x), len(folds), _ptr(coefs), pointers, decay, int(half), threads)
    return code == 0

