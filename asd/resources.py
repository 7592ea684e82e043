"""What a run costs, sampled in a background thread: GPU utilisation, memory, GPU-hours and energy (NVML),
CPU time and peak resident memory (``/proc``). Used by :mod:`asd.tracking`; docs/tracking.md.

    s = ResourceSampler(interval_s=1.0).start()
    ...                                  # the run
    summary = s.stop()                   # a JSON-ready dict (see :func:`ResourceSampler.stop`)

Numbers come only from counters: GPU energy is the difference of NVML's total-energy counter
(``nvmlDeviceGetTotalEnergyConsumption``, mJ since the driver loaded) between start and stop, on cards that
have it; elsewhere it is ``None`` with the reason, never an estimate. GPU-hours are *allocated* GPU-hours:
the GPUs this process may use (``CUDA_VISIBLE_DEVICES``, else all NVML devices) × wall hours, as a
cluster charges them; ``busy_gpu_hours`` integrates the sampled utilisation. nvidia-ml-py (``pynvml``) is
imported lazily; without it, or without a driver, the GPU part says why it is not available.

The sampler measures its own cost: the CPU time of its thread (``time.thread_time``), reported as
``sampler.overhead_s`` and as a fraction of the run's wall time.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

DEFAULT_INTERVAL_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------------------------- /proc


def proc_cpu_times(pid: str = "self") -> dict[str, float]:
    """CPU seconds of the process and of its waited-for children, from ``/proc/<pid>/stat``.

    Returns ``{"user_s", "system_s", "children_user_s", "children_system_s"}`` (seconds).
    """
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; field 3 (state) is fields[0]
    utime, stime, cutime, cstime = (int(x) / CLK_TCK for x in fields[11:15])
    return {"user_s": utime, "system_s": stime, "children_user_s": cutime, "children_system_s": cstime}


def proc_memory(pid: str = "self") -> dict[str, int]:
    """``{"rss_bytes", "peak_rss_bytes"}`` from ``/proc/<pid>/status`` (VmRSS, VmHWM: the process's peak)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            key = "rss_bytes" if line.startswith("VmRSS") else "peak_rss_bytes"
            out[key] = int(line.split()[1]) * 1024  # the file says kB (KiB)
    return out


# ----------------------------------------------------------------------------------------------- NVML


class GPUs:
    """The NVML devices this process may use, or the reason there are none to measure.

    ``available``: NVML answered; ``devices``: ``[(nvml index, handle)]``; ``reason``: why not available
    (``None`` when available); ``no_gpu``: True when this machine has no NVIDIA GPU at all (then zero
    GPU-hours is a measurement, not a guess).
    """

    def __init__(self, enabled: bool = True):
        self.nvml: Any = None
        self.devices: list[tuple[int, Any]] = []
        self.reason: str | None = None
        self.no_gpu = False
        self.warn = False  # the reason deserves a message on stderr (GPUs are there but cannot be measured)
        if not enabled:
            self.reason = "GPU sampling switched off"
            return
        devices_present = _nvidia_device_files()
        try:
            import pynvml
        except ImportError:
            self.no_gpu, self.warn = not devices_present, True
            self.reason = "nvidia-ml-py is not installed (pip install nvidia-ml-py): GPU utilisation, memory and " + (
                "energy not available" if devices_present else "energy not measured; this machine shows no NVIDIA GPU"
            )
            return
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            self.no_gpu, self.warn = not devices_present, devices_present
            self.reason = (
                f"NVML could not start ({e}): GPU utilisation, memory and energy not available"
                if devices_present
                else f"no NVIDIA GPU on this machine (NVML: {e})"
            )
            return
        self.nvml = pynvml
        try:
            n = pynvml.nvmlDeviceGetCount()
            handles = [(i, pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(n)]
            self.devices = _visible(handles, pynvml, os.environ.get("CUDA_VISIBLE_DEVICES"))
        except pynvml.NVMLError as e:
            self.reason, self.warn = f"NVML could not list the devices ({e})", True
            self.nvml = None
            return
        if not self.devices:
            self.no_gpu = True
            self.reason = "no GPU visible to this process (CUDA_VISIBLE_DEVICES)" if n else "NVML lists no GPU"

    @property
    def available(self) -> bool:
        return self.nvml is not None and bool(self.devices)

    def describe(self) -> list[dict]:
        """Static facts per visible device: index, name, uuid, PCI bus id, memory total (bytes)."""
        out = []
        for i, h in self.devices:
            d: dict[str, Any] = {"index": i}
            for key, fn in (
                ("name", lambda h: _s(self.nvml.nvmlDeviceGetName(h))),
                ("uuid", lambda h: _s(self.nvml.nvmlDeviceGetUUID(h))),
                ("pci_bus_id", lambda h: _s(self.nvml.nvmlDeviceGetPciInfo(h).busId)),
                ("memory_total_bytes", lambda h: int(self.nvml.nvmlDeviceGetMemoryInfo(h).total)),
            ):
                d[key] = _try(fn, h)
            out.append(d)
        return out

    def driver(self) -> dict:
        """``{"driver_version", "cuda_driver_version"}`` (e.g. "550.54.15", "12.4"), None where NVML lacks it."""
        if self.nvml is None:
            return {"driver_version": None, "cuda_driver_version": None}
        cuda = _try(lambda: int(self.nvml.nvmlSystemGetCudaDriverVersion()))
        return {
            "driver_version": _try(lambda: _s(self.nvml.nvmlSystemGetDriverVersion())),
            "cuda_driver_version": f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None,
        }

    def energy_mj(self) -> list[int | None]:
        """NVML's total-energy counter per device (mJ since the driver loaded); None where unsupported."""
        return [_try(lambda h=h: int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(h))) for _, h in self.devices]

    def energy_errors(self) -> list[str | None]:
        """Why each device's energy counter cannot be read (None where it can)."""
        out: list[str | None] = []
        for _, h in self.devices:
            try:
                self.nvml.nvmlDeviceGetTotalEnergyConsumption(h)
                out.append(None)
            except self.nvml.NVMLError as e:
                out.append(f"NVML: {e}")
        return out

    def shutdown(self) -> None:
        if self.nvml is not None:
            _try(self.nvml.nvmlShutdown)
            self.nvml = None


def _s(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _try(fn: Callable, *args):
    """``fn(*args)``, or None when NVML (or the attribute) is not there for this card."""
    try:
        return fn(*args)
    except Exception:  # NVMLError subclasses (NotSupported, NoPermission, ...) and missing functions
        return None


def _nvidia_device_files() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/gpus").is_dir()


def _visible(handles: list[tuple[int, Any]], nvml, cvd: str | None) -> list[tuple[int, Any]]:
    """The NVML devices ``CUDA_VISIBLE_DEVICES`` names; all if unset (see :func:`visible_indices`)."""
    uuids = [_try(lambda h=h: _s(nvml.nvmlDeviceGetUUID(h))) or "" for _, h in handles]
    return [handles[k] for k in visible_indices(uuids, cvd)]


def visible_indices(uuids: list[str], cvd: str | None) -> list[int]:
    """Positions in ``uuids`` (NVML order) that ``CUDA_VISIBLE_DEVICES`` names: indices (taken in NVML/PCI
    order, as with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``) or ``GPU-``/``MIG-`` UUIDs (a unique prefix is enough).
    Like CUDA, the list ends at the first entry that names no device.

    Example: 8 GPUs, ``cvd="2,3"`` → ``[2, 3]``; ``cvd=""`` → ``[]``; ``cvd=None`` → all eight.
    """
    if cvd is None:
        return list(range(len(uuids)))
    out: list[int] = []
    for tok in (t.strip() for t in cvd.split(",")):
        if tok.isdigit() and int(tok) < len(uuids):
            k: int | None = int(tok)
        else:
            hits = [i for i, u in enumerate(uuids) if tok and u.startswith(tok)]
            k = hits[0] if len(hits) == 1 else None
        if k is None:
            break
        out.append(k)
    return out


# ----------------------------------------------------------------------------------------------- sampler


class _Running:
    """Mean and maximum of a stream of numbers in O(1) memory."""

    __slots__ = ("max", "n", "total")

    def __init__(self) -> None:
        self.n, self.total = 0, 0.0
        self.max: float | None = None

    def add(self, x: float | None) -> None:
        if x is None:
            return
        self.n += 1
        self.total += x
        self.max = x if self.max is None else max(self.max, x)

    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


class ResourceSampler:
    """Background thread sampling GPU utilisation/memory/power every ``interval_s``; counters at start/stop.

    Memory per run is O(devices): running means and maxima, no time series. ``on_tick`` (optional) is called
    from the sampler thread every ``tick_every_s`` seconds (the tracker writes its record there, so a killed
    run leaves one); its time counts as sampler overhead.
    """

    def __init__(
        self,
        interval_s: float = DEFAULT_INTERVAL_S,
        gpu: bool = True,
        on_tick: Callable[[], None] | None = None,
        tick_every_s: float = 300.0,
    ):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        self._gpu_enabled = gpu
        self.on_tick = on_tick
        self.tick_every_s = tick_every_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.samples = 0
        self.overhead_s = 0.0
        self.tick_errors: list[str] = []

    # -- lifecycle
    def start(self) -> ResourceSampler:
        t0 = time.thread_time()
        self.gpus = GPUs(self._gpu_enabled)
        self.t0 = time.time()
        self.mono0 = time.monotonic()
        self.cpu0 = proc_cpu_times()
        self.energy0: list[int | None] = self.gpus.energy_mj() if self.gpus.available else []
        n = len(self.gpus.devices)
        self.util = [_Running() for _ in range(n)]
        self.mem = [_Running() for _ in range(n)]
        self.power = [_Running() for _ in range(n)]
        self.busy_s = [0.0] * n  # ∫ utilisation dt (seconds at 100 %)
        self.rss = _Running()
        self._last = time.monotonic()
        self._last_tick = self._last
        self.start_overhead_s = time.thread_time() - t0  # NVML start-up: reported, not in the thread's share
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="asd-resource-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            c0 = time.thread_time()
            self._sample()
            if self.on_tick is not None and time.monotonic() - self._last_tick >= self.tick_every_s:
                self._last_tick = time.monotonic()
                try:
                    self.on_tick()
                except Exception as e:  # a failing periodic write must not stop the sampling (nor the run)
                    self.tick_errors.append(f"{type(e).__name__}: {e}")
            self.overhead_s += time.thread_time() - c0

    def _sample(self) -> None:
        now = time.monotonic()
        with self._lock:
            dt, self._last = now - self._last, now
            self.samples += 1
            self.rss.add(proc_memory().get("rss_bytes"))
            if not self.gpus.available:
                return
            nv = self.gpus.nvml
            for k, (_, h) in enumerate(self.gpus.devices):
                u = _try(lambda h=h: float(nv.nvmlDeviceGetUtilizationRates(h).gpu))
                self.util[k].add(u)
                if u is not None:
                    self.busy_s[k] += dt * u / 100.0
                self.mem[k].add(_try(lambda h=h: float(nv.nvmlDeviceGetMemoryInfo(h).used)))
                self.power[k].add(_try(lambda h=h: nv.nvmlDeviceGetPowerUsage(h) / 1000.0))

    def snapshot(self) -> dict:
        """The summary so far (the thread keeps running); see :meth:`stop`."""
        return self._summary(final=False)

    def stop(self) -> dict:
        """Stop the thread, take the last sample, and return the run's resources::

        {"wall_s", "started_unix", "cpu": {"user_s", "system_s", "children_user_s", "children_system_s",
         "total_s"}, "memory": {"peak_rss_bytes", "mean_rss_bytes", "children_peak_rss_bytes"},
         "gpu": {"available", "reason", "count", "gpu_hours", "busy_gpu_hours", "energy_j",
                 "energy_note", "devices": [...]},
         "sampler": {"interval_s", "samples", "overhead_s", "overhead_fraction"}}
        """
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            c0 = time.thread_time()
            self._sample()
            self.overhead_s += time.thread_time() - c0
        out = self._summary(final=True)
        self.gpus.shutdown()
        return out

    def _summary(self, final: bool) -> dict:
        with self._lock:
            wall = time.monotonic() - self.mono0
            cpu1 = proc_cpu_times()
            cpu = {k: round(cpu1[k] - self.cpu0[k], 3) for k in cpu1}
            cpu["total_s"] = round(sum(cpu.values()), 3)
            mem = proc_memory()
            children_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            out: dict[str, Any] = {
                "wall_s": round(wall, 3),
                "started_unix": round(self.t0, 3),
                "complete": final,
                "cpu": cpu,
                "memory": {
                    "peak_rss_bytes": mem.get("peak_rss_bytes"),
                    "mean_rss_bytes": int(self.rss.mean() or 0),
                    "children_peak_rss_bytes": int(children_kib) * 1024,
                },
                "gpu": self._gpu_summary(wall),
                "sampler": {
                    "interval_s": self.interval_s,
                    "samples": self.samples,
                    "overhead_s": round(self.overhead_s, 6),
                    "startup_s": round(self.start_overhead_s, 6),
                    "overhead_fraction": round(self.overhead_s / wall, 8) if wall > 0 else 0.0,
                },
            }
            if self.tick_errors:
                out["sampler"]["write_errors"] = self.tick_errors[-3:]
            return out

    def _gpu_summary(self, wall: float) -> dict:
        g = self.gpus
        if not g.available:
            zero = 0.0 if g.no_gpu else None  # no GPU at all: 0 GPU-hours is measured; else unknown
            return {
                "available": False,
                "reason": g.reason,
                "count": 0 if g.no_gpu else None,
                "gpu_hours": zero,
                "busy_gpu_hours": zero,
                "energy_j": zero,
                "energy_note": g.reason if not g.no_gpu else "no GPU",
                "devices": [],
            }
        e1 = g.energy_mj()
        devices = []
        for k, d in enumerate(g.describe()):
            a, b = self.energy0[k], e1[k]
            e = (b - a) / 1000.0 if a is not None and b is not None else None
            d.update(
                util_mean_pct=_r(self.util[k].mean()),
                util_max_pct=_r(self.util[k].max),
                memory_used_mean_bytes=_i(self.mem[k].mean()),
                memory_used_max_bytes=_i(self.mem[k].max),
                power_mean_w=_r(self.power[k].mean()),
                power_max_w=_r(self.power[k].max),
                busy_s=round(self.busy_s[k], 3),
                energy_j=_r(e),
            )
            devices.append(d)
        energies = [d["energy_j"] for d in devices]
        if all(e is not None for e in energies):
            energy, note = round(sum(energies), 3), "NVML total-energy counter, stop − start"
        else:
            missing = [d["index"] for d in devices if d["energy_j"] is None]
            why = next((e for e in g.energy_errors() if e), "counter unreadable")
            energy, note = None, f"not available: GPU(s) {missing} have no total-energy counter ({why})"
        return {
            "available": True,
            "reason": None,
            "count": len(devices),
            "gpu_hours": round(len(devices) * wall / 3600.0, 6),
            "busy_gpu_hours": round(sum(self.busy_s) / 3600.0, 6),
            "energy_j": energy,
            "energy_note": note,
            "devices": devices,
        }


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


def _i(x: float | None) -> int | None:
    return None if x is None else int(x)


# ----------------------------------------------------------------------------------------------- sums


def sum_resources(parts: Iterable[dict]) -> dict:
    """One summary for several processes (the tasks of an array and their attempts).

    Sums wall time (task-seconds), CPU seconds, GPU-hours, busy GPU-hours, sampler overhead; takes the
    maximum of peak RSS; energy is summed only when every part measured it (else ``None`` and a note naming
    how many did not: a partial sum is not the run's energy). Returns the same keys as
    :meth:`ResourceSampler.stop` plus ``"tasks"`` and ``"span_s"`` (first start to last end).
    """
    parts = list(parts)
    if not parts:
        raise ValueError("sum_resources: no records to sum")

    def total(get) -> float | None:
        vals = [get(p) for p in parts]
        return None if any(v is None for v in vals) else round(sum(vals), 6)

    starts = [p["started_unix"] for p in parts]
    ends = [p["started_unix"] + p["wall_s"] for p in parts]
    cpu_keys = parts[0]["cpu"].keys()
    gpus = [p["gpu"] for p in parts]
    no_energy = [i for i, g in enumerate(gpus) if g.get("energy_j") is None]
    wall = total(lambda p: p["wall_s"]) or 0.0
    overhead = total(lambda p: p["sampler"]["overhead_s"]) or 0.0
    return {
        "tasks": len(parts),
        "wall_s": wall,
        "span_s": round(max(ends) - min(starts), 3),
        "started_unix": min(starts),
        "complete": all(p.get("complete", True) for p in parts),
        "cpu": {k: total(lambda p, k=k: p["cpu"][k]) for k in cpu_keys},
        "memory": {
            "peak_rss_bytes": max((p["memory"].get("peak_rss_bytes") or 0) for p in parts),
            "mean_rss_bytes": int(sum(p["memory"].get("mean_rss_bytes") or 0 for p in parts) / len(parts)),
            "children_peak_rss_bytes": max((p["memory"].get("children_peak_rss_bytes") or 0) for p in parts),
        },
        "gpu": {
            "available": all(g["available"] for g in gpus),
            "reason": next((g["reason"] for g in gpus if g.get("reason")), None),
            "count": max((g.get("count") or 0) for g in gpus),
            "gpu_hours": total(lambda p: p["gpu"].get("gpu_hours")),
            "busy_gpu_hours": total(lambda p: p["gpu"].get("busy_gpu_hours")),
            "energy_j": None if no_energy else total(lambda p: p["gpu"]["energy_j"]),
            "energy_note": (
                f"sum over {len(parts)} task(s)"
                if not no_energy
                else f"not available: {len(no_energy)} of {len(parts)} task(s) have no energy reading "
                f"({gpus[no_energy[0]].get('energy_note')})"
            ),
            "devices": [],
        },
        "sampler": {
            "interval_s": max(p["sampler"]["interval_s"] for p in parts),
            "samples": sum(p["sampler"]["samples"] for p in parts),
            "overhead_s": overhead,
            "startup_s": round(sum(p["sampler"].get("startup_s", 0.0) for p in parts), 6),
            "overhead_fraction": round(overhead / wall, 8) if wall > 0 else 0.0,
        },
    }
