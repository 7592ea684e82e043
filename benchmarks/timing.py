"""Small timing helper shared by the benchmarks (benchmarks/ is on sys.path through benchmarks/conftest.py)."""
import statistics
import time


def median_seconds(fn, reps: int = 5, warmup: int = 0) -> float:
    """Median wall-clock seconds of ``reps`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
