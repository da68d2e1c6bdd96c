"""The benchmark's results as a fixed-width text table (``squeezedet benchmark`` prints it)."""

from __future__ import annotations

from typing import Any


def row_note(r: dict[str, Any]) -> str:
    """The table's note for a row: ``emulated`` (bf16 without native support), ``runs f32``
    (an OpenVINO bf16 model on a CPU without bf16), ``int8 fallback`` (not NNCF's all-int8
    model: ``int8_fallback``, set by :mod:`squeezedet.deployment.benchmark`), ``energy est.``
    (its energy is the estimate, not a reading), comma-separated; else empty."""
    notes = []
    if r.get("emulated"):
        notes.append("emulated")
    elif r.get("precision") == "bf16" and r.get("inference_precision") == "f32":
        notes.append("runs f32")
    if r.get("int8_fallback"):
        notes.append("int8 fallback")
    if (r.get("energy") or {}).get("estimated"):
        notes.append("energy est.")
    return ", ".join(notes)


def _energy_cells(e: dict[str, Any] | None) -> str:
    if not e:
        return f"{'-':>10}{'-':>7}"
    star = "*" if e["estimated"] else ""
    return f"{e['joules_per_image']:>9.4g}{star or ' '}{e['mean_watts']:>7.3g}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (latencies in ms: median / p90 / min)."""
    energy = any(r.get("energy") for r in rows)
    head = (f"{'backend':<12}{'prec':<6}{'pre ms':>18}{'forward ms':>21}{'post ms':>18}"
            f"{'total ms':>21}{'FPS':>7}{'ratio':>7}{'RSS MiB':>9}{'MB':>6}{'GF/s':>7}{'%peak':>7}"
            + (f"{'J/img':>10}{'W':>7}" if energy else "") + "  note")
    lines = [head, "-" * len(head)]

    def trio(r: dict[str, Any], stage: str) -> str:
        return (f"{r[f'{stage}_ms_median']:.1f}/{r[f'{stage}_ms_p90']:.1f}/"
                f"{r[f'{stage}_ms_min']:.1f}")

    for r in rows:
        ratio = f"{r['ratio_to_baseline']:.3f}" if r.get("ratio_to_baseline") else "-"
        frac = f"{100 * r['peak_fraction']:.0f}" if r.get("peak_fraction") else "-"
        lines.append(
            f"{r['backend']:<12}{r['precision']:<6}{trio(r, 'pre'):>18}{trio(r, 'forward'):>21}"
            f"{trio(r, 'post'):>18}{trio(r, 'total'):>21}{r['fps']:>7.1f}{ratio:>7}"
            f"{r['peak_rss_mib']:>9.0f}{r['model_mb']:>6.1f}{r['gflops_per_s']:>7.1f}{frac:>7}"
            + (_energy_cells(r.get("energy")) if energy else "")
            + f"  {row_note(r)}".rstrip()
        )
    return "\n".join(lines)
