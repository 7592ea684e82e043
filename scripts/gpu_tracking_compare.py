"""Compare a tracked run's GPU-hours and energy (asd.tracking record) with nvidia-smi's own reading.

    python3 scripts/gpu_tracking_compare.py OUT      # after scripts/gpu_tracking.sh (which runs it); writes OUT/compare.json

nvidia-smi's side: ``OUT/smi_samples.csv`` (power.draw every ~100 ms) integrated (trapezoid) over the
tracked interval [started_unix, started_unix + wall_s], GPU-hours = GPUs × that interval; and, when this
nvidia-smi lists an energy field, its value after minus before the whole script (a slightly longer interval:
it includes the ~2 s of idle around the run, reported as such).
"""

from __future__ import annotations

import csv
import itertools
import datetime as dt
import json
import sys
from pathlib import Path


def _ts(s: str) -> float:
    return dt.datetime.strptime(s.strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()


def smi_samples(path: Path) -> dict[int, list[tuple[float, float, float]]]:
    """GPU index → [(unix time, power W, utilisation %)] from ``--format=csv,nounits`` output."""
    out: dict[int, list[tuple[float, float, float]]] = {}
    with open(path) as f:
        rows = list(csv.reader(f))
    for row in rows[1:]:
        if len(row) < 5:
            continue
        try:
            out.setdefault(int(row[1]), []).append((_ts(row[0]), float(row[2]), float(row[3])))
        except ValueError:
            continue  # "[N/A]" or a partial last line
    return out


def integrate(samples: list[tuple[float, float, float]], t0: float, t1: float) -> tuple[float, float, float, int]:
    """(joules, mean W, mean util %, samples used) of the samples inside [t0, t1] (trapezoid rule)."""
    pts = [s for s in samples if t0 <= s[0] <= t1]
    e = sum((b[0] - a[0]) * (a[1] + b[1]) / 2 for a, b in itertools.pairwise(pts))
    n = len(pts)
    return e, sum(p[1] for p in pts) / max(n, 1), sum(p[2] for p in pts) / max(n, 1), n


def energy_field(out: Path) -> dict | None:
    b, a = out / "smi_energy_before.csv", out / "smi_energy_after.csv"
    if not (b.is_file() and a.is_file()):
        return None
    rb, ra = list(csv.reader(b.open())), list(csv.reader(a.open()))
    head = ra[0][2].strip()
    vals = [(float(x[2]), float(y[2])) for x, y in zip(rb[1:], ra[1:])]
    return {
        "field": head,
        "before": [v[0] for v in vals],
        "after": [v[1] for v in vals],
        "difference": [v[1] - v[0] for v in vals],
        "interval_s": _ts(ra[1][0]) - _ts(rb[1][0]),
    }


def main(out: Path) -> dict:
    rec = json.loads(next((out / "logs").glob("profile-*_data.json")).read_text())
    res = rec["resources"]
    t0, t1 = res["started_unix"], res["started_unix"] + res["wall_s"]
    smi = smi_samples(out / "smi_samples.csv")
    gpu = res["gpu"]
    rows = []
    for d in gpu["devices"]:
        e, p, u, n = integrate(smi.get(d["index"], []), t0, t1)
        rows.append(
            {
                "index": d["index"],
                "name": d["name"],
                "tracker_energy_j": d["energy_j"],
                "smi_power_integral_j": round(e, 1),
                "rel_diff": (d["energy_j"] - e) / e if d["energy_j"] and e else None,
                "tracker_power_mean_w": d["power_mean_w"],
                "smi_power_mean_w": round(p, 1),
                "tracker_util_mean_pct": d["util_mean_pct"],
                "smi_util_mean_pct": round(u, 1),
                "smi_samples": n,
            }
        )
    result = {
        "wall_s": res["wall_s"],
        "tracker_gpu_hours": gpu["gpu_hours"],
        "smi_gpu_hours": round(len(rows) * (t1 - t0) / 3600, 6),
        "tracker_busy_gpu_hours": gpu["busy_gpu_hours"],
        "tracker_energy_j": gpu["energy_j"],
        "tracker_energy_note": gpu["energy_note"],
        "sampler_overhead_fraction": res["sampler"]["overhead_fraction"],
        "devices": rows,
        "smi_energy_field": energy_field(out),
    }
    (out / "compare.json").write_text(json.dumps(result, indent=1))
    print(
        f"tracked run: wall {res['wall_s']:.1f} s, sampler overhead {100 * res['sampler']['overhead_fraction']:.3f} %"
    )
    print(f"GPU-hours   tracker {gpu['gpu_hours']}  nvidia-smi (GPUs × interval) {result['smi_gpu_hours']}")
    for r in rows:
        print(
            f"GPU {r['index']} {r['name']}: energy tracker (NVML counter) {r['tracker_energy_j']} J, nvidia-smi "
            f"∫power.draw {r['smi_power_integral_j']} J over {r['smi_samples']} samples"
            + (f" ({100 * r['rel_diff']:+.1f} %)" if r["rel_diff"] is not None else "")
            + f"; mean power {r['tracker_power_mean_w']} vs {r['smi_power_mean_w']} W, "
            f"util {r['tracker_util_mean_pct']} vs {r['smi_util_mean_pct']} %"
        )
    if result["smi_energy_field"]:
        f = result["smi_energy_field"]
        print(
            f"nvidia-smi {f['field']}: after − before = {f['difference']} over {f['interval_s']:.1f} s (whole script)"
        )
    return result


if __name__ == "__main__":
    main(Path(sys.argv[1]))
