"""Write the benchmark tables of docs/benchmarks.md and README.md from the committed measurements.

Each ``docs/benchmarks/*.json`` is the ``--json`` output of one ``squeezedet benchmark`` run; this
script turns every file into one table (one per CPU and instruction-set limit) between the markers

    <!-- benchmark-tables:start -->  ...  <!-- benchmark-tables:end -->

of docs/benchmarks.md, and the README's results table (speed, size and energy from the first
file, the rows of recorded runs from ``RECORDED_*``) between
``<!-- benchmark-readme:start -->`` and ``<!-- benchmark-readme:end -->``. So a table can never
drift from its measurement: ``--check`` (run by tests/test_docs.py) fails when a file differs from
what the JSON files give.

    python scripts/benchmark_tables.py            # rewrite the generated parts
    python scripts/benchmark_tables.py --check    # exit 1 if they are out of date

To add a CPU: run the command of the page's "Reproduce" section with ``--json
docs/benchmarks/NAME.json`` and add NAME.json's line to ``RUNS`` below (date, the CPU in words).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "benchmarks"
PAGE = ROOT / "docs" / "benchmarks.md"
README = ROOT / "README.md"

#: file -> (date measured, the CPU in words: what /proc/cpuinfo's model name does not say).
#: The order is the page's; the first file gives the README's rows.
RUNS: dict[str, tuple[str, str]] = {
    "amd-epyc-zen5.json": ("2026-12-06", "a 2-core AMD EPYC (Zen 5) CPU with AVX-512, VNNI and bf16"),
    "amd-epyc-zen5-avx2.json": ("2026-12-06", "the same 2-core AMD EPYC (Zen 5) CPU with AVX-512, "
                                "VNNI and bf16, limited to AVX2"),
}
#: the CPU flags worth naming in a table's caption (the JSON keeps them all)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16",
             "avx512_fp16", "amx_bf16", "amx_int8", "asimd", "sve")
#: the rows the README names, in its order: (backend, precision, name)
README_ROWS = (("torch", "fp32", "PyTorch"), ("onnxruntime", "fp32", "ONNX Runtime"),
               ("openvino", "fp32", "OpenVINO"), ("openvino", "int8", "OpenVINO int8"))
COMMAND = "squeezedet benchmark --input-size 1248x384 --threads 2 --energy --json FILE.json"
NAMES = {"torch-nchw": "PyTorch, NCHW (baseline)", "torch": "PyTorch", "torch-compile":
         "PyTorch, compiled", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
         "auto": "auto"}


def _caption(name: str, report: dict) -> list[str]:
    date, words = RUNS[name]
    cpu = report["cpu"]
    flags = [f for f in ISA_FLAGS if f in cpu.get("flags", [])]
    limits = " ".join(f"{k}={v}" for k, v in cpu.get("isa_limits", {}).items())
    versions = ", ".join(f"{k} {v}" for k, v in report.get("versions", {}).items()
                         if v and k != "squeezedet")
    load = report.get("load_average")
    w, h = report["input_size"]
    lines = [
        f"### {date}: {words}",
        "",
        f"`{cpu['model']}` ({cpu['machine']}; {', '.join(flags) or 'no vector flags listed'}); "
        f"PyTorch's kernels: {cpu['torch_capability']}; bf16 "
        f"{'native' if cpu['native_bf16'] else 'emulated'}"
        + (f"; limited with `{limits}`" if limits else "") + ". "
        f"{report['threads']} threads of {cpu.get('usable_cores', '?')} usable cores; "
        f"{report['model']} at {w}×{h}, batch {report['batch']}, {report['image']}; "
        f"squeezedet {report.get('versions', {}).get('squeezedet', '?')} with {versions}."
        + (f" Load average at the end: {load[0]:.1f} (other work shared the machine)."
           if load and load[0] > report["threads"] + 0.5 else ""),
        "",
        f"Data: [`{name}`](benchmarks/{name}).",
        "",
    ]
    return lines


def _ms(r: dict, stage: str) -> str:
    return f"{r[f'{stage}_ms_median']:.1f}"


def table(name: str, report: dict) -> list[str]:
    """One CPU's table: a row per backend and precision, median latencies."""
    lines = _caption(name, report)
    lines += ["| backend | precision | total ms: median (min) | forward ms: median (min) | FPS "
              "| × baseline | RSS MiB "
              "| model MB | %peak | J/img (est.) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["rows"]:
        energy = r.get("energy") or {}
        joules = (f"{energy['joules_per_image']:.4f}" + ("*" if energy.get("estimated") else "")
                  if energy else "–")
        peak = f"{100 * r['peak_fraction']:.0f}" if r.get("peak_fraction") else "–"
        ratio = f"{r['ratio_to_baseline']:.2f}" if r.get("ratio_to_baseline") else "–"
        precision = r["precision"]
        if r.get("emulated"):
            precision += " (emulated)"
        elif r["precision"] == "bf16" and r.get("inference_precision") == "f32":
            precision += " (runs f32)"
        if r.get("int8_fallback"):
            precision += " (fallback)"
        lines.append(f"| {NAMES.get(r['backend'], r['backend'])} | {precision} | {_ms(r, 'total')} "
                     f"({r['total_ms_min']:.1f}) | {_ms(r, 'forward')} ({r['forward_ms_min']:.1f}) "
                     f"| {r['fps']:.1f} | {ratio} "
                     f"| {r['peak_rss_mib']:.0f} | {r['model_mb']:.1f} | {peak} | {joules} |")
    notes = list(report.get("notes", []))
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    lines.append("")
    return lines


#: the README's rows that come from recorded runs, not from the JSON files (see
#: docs/experiments.md): (what, figure, measured on, command)
RECORDED_FIRST = (
    ("demo: mean moderate AP_R40, 400 synthetic validation scenes",
     "**76.7** (Car 81.1, Pedestrian 59.3, Cyclist 89.6), 18.3 min in all",
     "a 2-core AMD EPYC (Zen 5) CPU with AVX-512, VNNI and bf16, 2026-12-06", "`make demo`"),
)
RECORDED_LAST = (
    ("compressed demo model (`.sqz`)", "0.97 MB, mAP_R40 −0.26 against fp32",
     "a 2-core AMD EPYC (Zen 5) CPU with AVX-512, VNNI and bf16, 2026-12-06",
     "`squeezedet compress --weights runs/demo/train/best.pt --data runs/demo/data --evaluate "
     "--out runs/demo/model.sqz`"),
)


def _row(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"


def readme_table(name: str, report: dict) -> list[str]:
    """The README's one results table: the recorded rows around those of one run's JSON."""
    return (["| what | figure | measured on | command |", "| --- | --- | --- | --- |"]
            + [_row(r) for r in RECORDED_FIRST] + readme_rows(name, report)
            + [_row(r) for r in RECORDED_LAST])


def readme_rows(name: str, report: dict) -> list[str]:
    """The README's results rows from one run: speed, model size and energy."""
    date, words = RUNS[name]
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    w, h = report["input_size"]
    speed = "; ".join(f"{label} {rows[(b, p)]['fps']:.1f} FPS ({rows[(b, p)]['total_ms_median']:.0f} ms, "
                      f"fastest {rows[(b, p)]['total_ms_min']:.0f} ms)"
                      for b, p, label in README_ROWS if (b, p) in rows)
    sizes = ", ".join(f"{label} {rows[(b, p)]['model_mb']:.1f} MB" for b, p, label in
                      (("torch", "fp32", "fp32"), ("openvino", "int8", "OpenVINO int8"))
                      if (b, p) in rows)
    energy = ", ".join(f"{p} {rows[(b, p)]['energy']['joules_per_image']:.3f} J"
                       for b, p in (("torch", "fp32"), ("openvino", "int8"))
                       if (b, p) in rows and rows[(b, p)].get("energy"))
    where = f"{words}, {report['threads']} threads, {date}"
    command = f"`{COMMAND.replace('FILE', 'docs/benchmarks/' + Path(name).stem)}`"
    return [
        f"| speed, end to end at {w}×{h}, batch {report['batch']} | {speed} | {where} | {command} |",
        f"| model file | {sizes} | | the same |",
        f"| energy per image (estimate, 45 nm) | {energy} | any | the same |",
    ]


def _replace(text: str, marker: str, body: list[str], path: Path) -> str:
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"{path}: the markers {start} ... {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    # blank lines around the body: Markdown ends the comment's HTML block there in every renderer
    return head + start + "\n\n" + "\n".join(body) + "\n\n" + end + tail


def generate() -> dict[Path, str]:
    """The two files as they should read."""
    reports = {}
    for name in RUNS:
        path = DATA / name
        try:
            reports[name] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"{path}: cannot read it ({exc}); run the benchmark with --json "
                             "there, or remove its line from RUNS") from None
    unknown = sorted(p.name for p in DATA.glob("*.json") if p.name not in RUNS)
    if unknown:
        raise SystemExit(f"{DATA}: {', '.join(unknown)} not in RUNS of {Path(__file__).name}: "
                         "add a line for each (date, the CPU in words)")
    body: list[str] = []
    for name, report in reports.items():
        body += table(name, report)
    first = next(iter(reports))
    out = {PAGE: _replace(PAGE.read_text(), "benchmark-tables", body[:-1], PAGE),
           README: _replace(README.read_text(), "benchmark-readme",
                            readme_table(first, reports[first]), README)}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="exit 1 if a generated part differs from what the JSON files give")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        if path.read_text() != text:
            if args.check:
                stale.append(path.relative_to(ROOT).as_posix())
            else:
                path.write_text(text)
                print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python scripts/benchmark_tables.py",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
