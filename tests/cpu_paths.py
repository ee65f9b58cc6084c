"""Environment settings that send numpy down other CPU code paths on the machine at hand (for the tests).

numpy picks a SIMD kernel per CPU at run time, and kernels may round differently; switching
dispatch targets off with ``NPY_DISABLE_CPU_FEATURES`` reaches on one machine the paths other
CPUs take (Intel with AVX-512, AMD with AVX2, ARM). ``OPENBLAS_CORETYPE`` is never changed (some
machines set it for correctness), so nothing that must be bit-exact may depend on BLAS rounding.
See docs/same-results.md.
"""

from __future__ import annotations

from typing import Final

ENV_VAR: Final = "NPY_DISABLE_CPU_FEATURES"
_WIDEST_PREFIXES: Final = ("AVX512", "X86_V4", "SVE")


def dispatch_targets() -> tuple[list[str], dict[str, bool]]:
    """numpy's dispatchable targets (in its order) and which of them this CPU has."""
    from numpy._core import _multiarray_umath as umath

    targets = list(getattr(umath, "__cpu_dispatch__", []))
    features = dict(getattr(umath, "__cpu_features__", {}))
    return targets, {name: bool(features.get(name, False)) for name in targets}


def cpu_path_settings() -> dict[str, dict[str, str]]:
    """``{name: environment overrides}`` for the default, widest-off and baseline-only numpy paths.

    numpy's names are used (since numpy 2.4 x86 targets are grouped as ``X86_V3`` (AVX2, FMA3,
    ...), ``X86_V4``, ``AVX512_ICL``, ``AVX512_SPR``; a name numpy cannot dispatch is ignored with a
    warning, and the baseline cannot be switched off):

    ``default``
        nothing changed;
    ``widest_off``
        the widest vector targets off (AVX-512 on x86, SVE on ARM): the path of a CPU without them;
    ``baseline_only``
        every dispatch target off: the path of the oldest CPU the numpy build supports (on x86,
        no AVX2 and no FMA).

    Examples
    --------
    >>> sorted(cpu_path_settings())
    ['baseline_only', 'default', 'widest_off']
    """
    targets, _ = dispatch_targets()
    widest = [t for t in targets if t.startswith(_WIDEST_PREFIXES)]
    settings: dict[str, dict[str, str]] = {"default": {}}
    settings["widest_off"] = {ENV_VAR: ",".join(widest)} if widest else {}
    settings["baseline_only"] = {ENV_VAR: ",".join(targets)} if targets else {}
    return settings


def describe_settings() -> dict[str, dict[str, object]]:
    """Each setting with the targets it turns off that this CPU actually has (empty: same as default)."""
    _, present = dispatch_targets()
    described: dict[str, dict[str, object]] = {}
    for name, env in cpu_path_settings().items():
        off = [t for t in env.get(ENV_VAR, "").split(",") if t]
        described[name] = {"env": env, "targets_off_that_this_cpu_has": [t for t in off if present.get(t)]}
    return described


__all__ = ["ENV_VAR", "cpu_path_settings", "describe_settings", "dispatch_targets"]
