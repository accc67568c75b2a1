"""Write a run's results: `results.json` (every figure, raw runs, machine,
versions) and `results.md` (the table), in a timestamped directory, plus
`latest.json` / `latest.md` next to them."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from bench.stats import Row, render_table


def _clean(obj):
    """JSON without NaN (null instead) and with rows as dicts."""
    if isinstance(obj, Row):
        return _clean(obj.to_dict())
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def markdown(result: dict) -> str:
    m, v, c = result["machine"], result["versions"], result["config"]
    head = (
        f"Lakehouse benchmark ({'quick' if c['quick'] else 'full'}), {result['started_at'][:19]}Z; "
        f"each figure the median of {c['runs']} runs (min – max).\n\n"
        f"Machine: {m['cores']} cores, {m['memory_bytes'] / 2**30:.0f} GiB, {m['cpu_model']}, {m['os']}. "
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".\n\n"
    )
    loads = result.get("details", {}).get("load_average")
    if loads:
        head += ("Load average (1/5/15 min) at the start and after each phase: "
                 + "; ".join(f"{k} {'/'.join(map(str, val))}" for k, val in loads.items())
                 + f" (the machine has {m['cores']} cores; above that, other work competed).\n\n")
    return head + render_table(result["rows"])


def write(result: dict, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = result["started_at"][:19].replace(":", "").replace("-", "")
    run_dir = out_dir / stamp
    run_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = run_dir / "results.json", run_dir / "results.md"
    json_path.write_text(json.dumps(_clean(result), indent=2, default=str) + "\n")
    md_path.write_text(markdown(result))
    shutil.copyfile(json_path, out_dir / "latest.json")
    shutil.copyfile(md_path, out_dir / "latest.md")
    return json_path, md_path
