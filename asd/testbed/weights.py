"""The committed testbed weights: where they are, their checksums, and ``resolve_model``.

Layout (package data)::

    asd/testbed/weights/<stage>/config.json          Qwen2Config
    asd/testbed/weights/<stage>/model.safetensors    bf16 weights
    asd/testbed/weights/SHA256SUMS                   "<sha256>  <stage>/<file>" per line

``resolve_model("testbed:s2")`` returns the folder after checking every file of that stage
against ``SHA256SUMS``; load it with ``Qwen2ForCausalLM.from_pretrained(folder)`` (offline),
the same path as any real checkpoint folder. Any other spec is returned unchanged
(a Hub id or a local folder is the backend's business).
"""

from __future__ import annotations

from pathlib import Path

from asd.data.base import file_sha256

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
PREFIX = "testbed:"
FILES = ("config.json", "generation_config.json", "model.safetensors")
# (resolved path, size, mtime_ns, inode) → sha256: a file is hashed once per process while it stays unchanged
# (an evaluation loads every cell's config, and with it every stage's weights check, once per cell)
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _sha256(p: Path) -> str:
    """``file_sha256(p)``, remembered while the file's path, size, mtime and inode stay the same."""
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino)
    got = _DIGESTS.get(key)
    if got is None:
        got = _DIGESTS[key] = file_sha256(p)
    return got


def read_sums(root: Path = WEIGHTS_DIR) -> dict[str, str]:
    """``{"s0/model.safetensors": sha256, ...}`` from ``root/SHA256SUMS``."""
    f = root / "SHA256SUMS"
    if not f.is_file():
        raise FileNotFoundError(f"{f}: missing checksum file of the testbed weights")
    sums = {}
    for i, line in enumerate(f.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{f}:{i}: expected '<sha256>  <path>', got {line!r}")
        sums[parts[1]] = parts[0]
    return sums


def write_sums(root: Path = WEIGHTS_DIR) -> Path:
    """Record the sha256 of every stage's files in ``root/SHA256SUMS``."""
    lines = [f"{file_sha256(p)}  {p.relative_to(root).as_posix()}" for p in sorted(root.glob("*/*")) if p.name in FILES]
    out = root / "SHA256SUMS"
    out.write_text("\n".join(lines) + "\n")
    return out


def stages(root: Path = WEIGHTS_DIR) -> list[str]:
    """Stage names with recorded checksums, in order (s0, s1, ...)."""
    return sorted({k.split("/")[0] for k in read_sums(root)})


def verify(stage: str, root: Path = WEIGHTS_DIR) -> Path:
    """The stage folder, after checking its files' sha256; clear error if missing or corrupt."""
    sums = read_sums(root)
    known = sorted({k.split("/")[0] for k in sums})
    if stage not in known:
        raise ValueError(f"unknown testbed stage {stage!r}; valid: {', '.join(known)}")
    folder = root / stage
    for name in FILES:
        p = folder / name
        key = f"{stage}/{name}"
        if key not in sums:
            raise ValueError(f"{root / 'SHA256SUMS'}: no checksum for {key}")
        if not p.is_file():
            raise FileNotFoundError(f"{p}: testbed weight file missing (reinstall asd or retrain: asd testbed train)")
        got = _sha256(p)
        if got != sums[key]:
            raise ValueError(f"{p}: sha256 mismatch (corrupt or modified weights): expected {sums[key]}, got {got}")
    return folder


def resolve_model(spec: str, root: Path = WEIGHTS_DIR) -> Path | str:
    """``"testbed:<stage>"`` → the verified weight folder; anything else is returned unchanged."""
    if not isinstance(spec, str):
        raise ValueError(f"model spec must be a string, got {spec!r}")
    if not spec.startswith(PREFIX):
        return spec
    return verify(spec[len(PREFIX) :], root)
