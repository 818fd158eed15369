"""Run every benchmark in benchmarks/ and write benchmarks/RESULTS.md.

Each ``benchmarks/bench_*.py`` exposes ``run() -> dict``.  The dict may hold

* ``"title"``: a heading for the section;
* ``"rows"``: a list of dicts, one per measurement, with keys ``metric``, ``ours``,
  ``peer``, ``ratio`` (ours relative to the peer, > 1 means we are faster/better),
  ``unit`` and ``note`` (any may be missing);
* ``"notes"``: free text shown under the table;
* anything else: shown as a key/value list.

Every ratio is measured against its peer in the same run on the same machine.  The
script measures; it does not assert.  Usage: ``python benchmarks/run_all.py [names…]``
rewrites RESULTS.md with the named benchmarks (all by default);
``python benchmarks/run_all.py --merge names…`` runs only those and replaces (or adds,
before the GPU section) just their sections, keeping the rest of RESULTS.md as it is.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import os
import platform
import re
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))


def machine() -> str:
    import torch

    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in open("/proc/cpuinfo")
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    mem = ""
    try:
        kb = int(
            next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal"))
        )
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration):
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores{mem}; GPU: {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    )


def _fmt(x: object) -> str:
    if isinstance(x, float):
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return "" if x is None else str(x)


def render(name: str, result: dict, seconds: float) -> str:
    out = [f"## {result.get('title', name)}", "", f"`benchmarks/{name}.py`, {seconds:.0f} s", ""]
    rows = result.get("rows") or []
    if rows:
        out += [
            "| metric | ours | peer | ratio | unit | note |",
            "| --- | ---: | ---: | ---: | --- | --- |",
        ]
        for r in rows:
            ratio = r.get("ratio")
            out.append(
                "| "
                + " | ".join(
                    [
                        str(r.get("metric", "")),
                        _fmt(r.get("ours")),
                        _fmt(r.get("peer")),
                        f"**{ratio:.2f}×**" if isinstance(ratio, (int, float)) else _fmt(ratio),
                        str(r.get("unit", "")),
                        str(r.get("note", "")),
                    ]
                )
                + " |"
            )
        out.append("")
    for k, v in result.items():
        if k not in ("title", "rows", "notes"):
            out.append(f"- {k}: {_fmt(v)}")
    if result.get("notes"):
        out += ["", str(result["notes"])]
    out.append("")
    return "\n".join(out)


def merge(existing: str, sections: list[str]) -> str:
    """``existing`` RESULTS.md with each of ``sections`` replacing the one of its title.

    Sections are the blocks that start with a ``## `` line; a section whose title is not
    there yet goes before ``## GPU`` (or at the end).  Everything else is kept verbatim.
    """
    parts = re.split(r"(?m)^(?=## )", existing)
    for section in sections:
        title = section.splitlines()[0]
        body = section.rstrip("\n") + "\n\n"
        at = [i for i, p in enumerate(parts) if p.splitlines()[:1] == [title]]
        if at:
            parts[at[0]] = body
        else:
            gpu = [i for i, p in enumerate(parts) if p.startswith("## GPU")]
            parts.insert(gpu[0] if gpu else len(parts), body)
    return "".join(parts)


def main(argv: list[str]) -> int:
    merging = "--merge" in argv
    argv = [a for a in argv if a != "--merge"]
    if merging and not argv:
        print("--merge needs the names of the benchmarks to run", file=sys.stderr)
        return 2
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if argv:
        unknown = set(argv) - set(names)
        if unknown:
            print(f"unknown benchmark(s) {sorted(unknown)}; available: {names}", file=sys.stderr)
            return 2
        names = [n for n in names if n in argv]
    sections, failed = [], []
    for name in names:
        print(f">>> {name}", flush=True)
        spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        t0 = time.perf_counter()
        try:
            spec.loader.exec_module(module)
            result = module.run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        sections.append(render(name, result, time.perf_counter() - t0))
        print(sections[-1], flush=True)
    results = HERE / "RESULTS.md"
    if merging:
        if not results.exists():
            print(f"--merge needs an existing {results}", file=sys.stderr)
            return 2
        today = _dt.date.today().isoformat()
        stamped = [
            s.replace("\n\n", f"\n\nMeasured {today} (`run_all.py --merge`); {machine()}.\n\n", 1)
            for s in sections
        ]
        results.write_text(merge(results.read_text(encoding="utf-8"), stamped), encoding="utf-8")
        print(
            f"merged {len(sections)} section(s) into {results}"
            + (f"; FAILED: {failed}" if failed else "")
        )
        return 1 if failed else 0
    head = [
        "# Benchmark results",
        "",
        f"Measured {_dt.date.today().isoformat()} with `make bench` (`python benchmarks/run_all.py`).",
        "",
        f"Machine: {machine()}.",
        "",
        "Each ratio compares llmbook with its peer measured in the same run on the same machine",
        "(> 1 means llmbook is faster). Absolute numbers vary with the machine and its load;",
        "the ratios are what the book quotes.",
        "",
    ]
    gpu = HERE / "GPU.md"
    tail = [
        "## GPU",
        "",
        gpu.read_text(encoding="utf-8")
        if gpu.exists()
        else "No GPU measurements have been recorded yet (see `benchmarks/GPU.md`).",
        "",
    ]
    (HERE / "RESULTS.md").write_text("\n".join(head + sections + tail), encoding="utf-8")
    print(f"wrote {HERE / 'RESULTS.md'}" + (f"; FAILED: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
