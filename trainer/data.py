"""Grain data sets for the trainers: `load_grains("synth" | folder)` -> GrainSet, split and cached.

    gs = load_grains("~/samples/drums", hop=512)   # every audio file under the folder
    gs = load_grains("synth")                      # the built-in synth set, no files needed
    gs.train, gs.val                               # float32 [N, 1024], memory-mapped from the cache

Splits are by *file* for folders: neighbouring grains overlap by half, so a grain-level split would leak
validation audio into training. Files go to validation in a seeded random order until about
val_fraction of the grains and at least MIN_VAL_FILES files are there. When whole files would take
more than twice val_fraction of the grains, or the folder has fewer than twice MIN_VAL_FILES files
(with two, one of them, say a drone, would be the whole validation), the folder is split in time
instead: the last val_fraction of every file's grains validate, and its training part stops a grain
short of them so nothing overlaps. `summary["split"]` says which was done, and train prints it.
Synth grains are independent renders, so they are split by grain.

The cache (default ~/.cache/grainbox, or $GRAINBOX_CACHE) holds one directory per data set, named by its
fingerprint: sha256 of every file's bytes plus every parameter that shapes the grains. A second run
finds it from a cheap listing (path, size, mtime of each audio file) without reading any audio, so it
starts in milliseconds; a changed, added or removed file changes the listing and the data is rebuilt
(or found again by content, if only the times changed).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from trainer import GRAIN_SIZE, SAMPLE_RATE, audio, synth

PIPELINE_VERSION = 4
"""Bump whenever the audio pipeline's output changes, so every cached folder is rebuilt."""
MIN_VAL_FILES = 3  # validation takes at least this many whole files; with under twice as many, split in time

log = logging.getLogger(__name__)


class NoAudioError(ValueError):
    """A folder gave no usable grains: nothing audio in it, or every audio file unreadable or silent."""


@dataclass
class GrainSet:
    """Training and validation grains with where each came from; arrays may be read-only memmaps."""

    train: np.ndarray  # float32 [N_train, 1024]
    val: np.ndarray  # float32 [N_val, 1024]
    train_source: np.ndarray  # int32 [N_train]: index into source_names
    val_source: np.ndarray  # int32 [N_val]
    source_names: list[str]  # folder: file paths relative to it; synth: SHAPE_NAMES
    train_params: dict[str, np.ndarray] | None  # synth only: SYNTH_PARAM_NAMES -> [N_train]
    val_params: dict[str, np.ndarray] | None
    fingerprint: str  # sha256 of the data and every parameter that shaped it
    summary: dict = field(default_factory=dict)  # what was found, loaded, skipped, dropped, split; cache
    sample_rate: int = SAMPLE_RATE
    grain_size: int = GRAIN_SIZE

    def true_pitch_midi(self, split: str = "val") -> np.ndarray | None:
        """Synth sets: each grain's pitch as a MIDI number (NaN for noise and perc); None for folders."""
        params = self.val_params if split == "val" else self.train_params
        return None if params is None else synth.true_pitch_midi(params)

    def describe(self) -> str:
        """A few human lines: what the set is made of and what was left out."""
        s = self.summary
        split = f"{len(self.train):,} train / {len(self.val):,} val grains, split {s.get('split', '?')}"
        if s.get("source") == "synth":
            return f"synth: {split}; cache {s.get('cache')} ({self.fingerprint[:12]})"
        gated = s["grains_dropped_silent"] / s["grains_cut"] if s.get("grains_cut") else 0.0
        padded = s.get("padded_files", [])
        lines = [
            f"{s['folder']}: {s['files_found']} audio files, {s['files_loaded']} loaded, "
            f"{s['files_skipped']} skipped, {len(s['silent_files'])} silent, "
            f"{s['files_ignored']} non-audio ignored, {len(padded)} shorter than a grain (zero-padded)",
            f"{s['grains_kept']:,} grains kept, {s['grains_dropped_silent']:,} ({gated:.0%}) dropped by the "
            f"silence gate at {s['gate_dbfs']:g} dBFS; {split} ({s['train_files']} / {s['val_files']} files)",
        ]
        lines += [f"skipped {x['file']}: {x['reason']}" for x in s["skipped"]]
        lines += [f"silent {name}: every grain below {s['gate_dbfs']:g} dBFS" for name in s["silent_files"]]
        lines += [f"zero-padded {name}: shorter than one grain" for name in padded]
        lines.append(f"cache {s.get('cache')} ({self.fingerprint[:12]})")
        return "\n".join(lines)


def default_cache_dir() -> Path:
    return Path(os.environ.get("GRAINBOX_CACHE") or Path.home() / ".cache" / "grainbox")


def load_grains(
    data: str,
    *,
    hop: int = audio.DEFAULT_HOP,
    val_fraction: float = 0.1,
    seed: int = 0,
    synth_grains: int = 20_000,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> GrainSet:
    """The grains of "synth" (the built-in set) or of every audio file under a folder, split and cached.

    Unreadable files are skipped, named and counted in .summary (describe() says it in words, and train
    prints that once per run); a folder without
    usable audio raises NoAudioError saying what was searched and what was found.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if hop < 1:
        raise ValueError(f"hop must be at least 1 sample, got {hop}")
    cache = _Cache(Path(cache_dir) if cache_dir is not None else default_cache_dir())
    if data == "synth":
        return _load_synth(synth_grains, val_fraction, seed, cache, progress)
    folder = Path(data).expanduser()
    if folder.is_file():
        raise NoAudioError(
            f"--data {data} is a file, not a folder: put it in a folder of its own (with more files if "
            "you have them) and give that folder"
        )
    if not folder.is_dir():
        raise NoAudioError(
            f"--data {data}: no such folder; give 'synth' (the built-in set) or a folder of audio files"
        )
    return _load_folder(folder.resolve(), hop, val_fraction, seed, cache, progress)


def load_grainset(spec: dict, cache_dir: str | Path | None = None, progress: bool = True) -> GrainSet:
    """The GrainSet a data spec names: load_grains with the options a run stored in its checkpoint.

    A spec is the dict `python -m trainer train` writes (data, hop, val_fraction, seed, synth_grains), so
    export, the baseline and the benches rebuild exactly the grains a run was trained on.
    """
    return load_grains(
        spec["data"],
        hop=spec["hop"],
        val_fraction=spec["val_fraction"],
        seed=spec["seed"],
        synth_grains=spec["synth_grains"],
        cache_dir=cache_dir,
        progress=progress,
    )


# --- the synth set ---------------------------------------------------------------------------------


def _load_synth(n: int, val_fraction: float, seed: int, cache: _Cache, progress: bool) -> GrainSet:
    if n < 2:
        raise ValueError(f"synth_grains must be at least 2 (one to train, one to validate), got {n}")
    params = {"kind": "synth", "synth_version": synth.SYNTH_VERSION, "grains": n,
              "val_fraction": val_fraction, "seed": seed}
    fingerprint = _sha256_json(params)
    cached = cache.load(fingerprint)
    if cached is not None:
        return cached
    grains, grain_params = synth.render_synth_grains(n, seed, progress=progress)
    order = np.random.default_rng([seed, 1]).permutation(n)
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 else 0
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    summary = {"source": "synth", "grains": n, "split": "by grain", "val_fraction": val_fraction,
               "seed": seed, "synth_version": synth.SYNTH_VERSION,
               "shape_counts": {s: int((grain_params["shape"] == i).sum())
                                for i, s in enumerate(synth.SHAPE_NAMES)}}
    with cache.writer(fingerprint) as entry:
        for split, idx in (("train", train_idx), ("val", val_idx)):
            np.save(entry / f"{split}.npy", grains[idx])
            np.save(entry / f"{split}_source.npy", grain_params["shape"][idx].astype(np.int32))
            np.savez(entry / f"{split}_params.npz", **{k: v[idx] for k, v in grain_params.items()})
        _write_meta(entry, fingerprint, list(synth.SHAPE_NAMES), summary)
    return cache.load_written(fingerprint)


# --- audio folders -------------------------------------------------------------------------------


def _load_folder(
    folder: Path, hop: int, val_fraction: float, seed: int, cache: _Cache, progress: bool
) -> GrainSet:
    files, others = audio.find_audio_files(folder)
    searched = f"searched {folder} recursively for {', '.join(sorted(audio.AUDIO_EXTENSIONS))}"
    if not files:
        found = f"found {len(others)} other files" + (f" (e.g. {others[0]})" if others else "")
        raise NoAudioError(f"no audio files: {searched}; {found}. Point --data at a folder of audio files.")

    params = {"kind": "folder", "pipeline": PIPELINE_VERSION, "sample_rate": SAMPLE_RATE,
              "grain_size": GRAIN_SIZE, "hop": hop, "gate_dbfs": audio.SILENCE_DBFS,
              "val_fraction": val_fraction, "seed": seed}
    listing = [(str(f), st.st_size, st.st_mtime_ns) for f in files for st in [(folder / f).stat()]]
    listing_key = _sha256_json({"params": params, "listing": listing})
    fingerprint = cache.fingerprint_for(listing_key)
    cached = cache.load(fingerprint, status="hit") if fingerprint else None
    if cached is None:  # the listing is new: identify the data by its bytes, which survive a copy or touch
        fingerprint = _sha256_json({"params": params, "files": _hash_files(folder, files, progress)})
        cached = cache.load(fingerprint, status="hit (found by content)")
    if cached is not None:
        cache.remember(listing_key, fingerprint)
        return cached

    with cache.writer(fingerprint) as entry:
        summary = _build_folder(folder, files, others, hop, val_fraction, seed, entry, progress, searched)
        _write_meta(entry, fingerprint, summary.pop("source_names"), summary)
    cache.remember(listing_key, fingerprint)
    return cache.load_written(fingerprint)


def _build_folder(
    folder: Path, files: list[Path], others: list[Path], hop: int, val_fraction: float, seed: int,
    entry: Path, progress: bool, searched: str,
) -> dict:
    """Decode every file into one raw grain file, split the files, write the split arrays into entry."""
    skipped, silent, padded, loaded = [], [], [], []  # loaded: (name, first grain, grain count)
    dropped = cut = 0
    seconds = 0.0
    raw_path = entry / "all.f32"
    with open(raw_path, "wb") as raw:
        for rel in tqdm(files, desc="reading audio", unit="file", disable=not progress):
            try:
                grains, n_dropped, secs = audio.file_to_grains(folder / rel, hop)
            except audio.AudioReadError as e:  # reported once, by GrainSet.describe()
                skipped.append({"file": str(rel), "reason": e.reason})
                continue
            seconds += secs
            if secs * SAMPLE_RATE < GRAIN_SIZE:  # shorter than one grain: cut_grains zero-padded it
                padded.append(str(rel))
            dropped += n_dropped
            cut += n_dropped + len(grains)
            if len(grains) == 0:
                silent.append(str(rel))
                continue
            loaded.append((str(rel), sum(c for _, _, c in loaded), len(grains)))
            raw.write(grains.astype(np.float32).tobytes())

    if not loaded:
        why = [f"{len(skipped)} unreadable" + (f" ({', '.join(s['file'] for s in skipped[:5])})" if skipped
                                                 else ""),
               f"{len(silent)} silent (every grain below {audio.SILENCE_DBFS:g} dBFS)"]
        raise NoAudioError(f"no usable audio: {searched}; {len(files)} audio files, {' and '.join(why)}. "
                           "Add audible, readable audio files to the folder.")

    total = sum(c for _, _, c in loaded)
    every = np.memmap(raw_path, dtype=np.float32, mode="r", shape=(total, GRAIN_SIZE))
    split, train_ranges, val_ranges = _split(loaded, hop, val_fraction, seed)
    for name, ranges in (("train", train_ranges), ("val", val_ranges)):
        n = sum(stop - start for _, start, stop in ranges)
        out = np.lib.format.open_memmap(entry / f"{name}.npy", mode="w+", dtype=np.float32,
                                        shape=(n, GRAIN_SIZE))
        source = np.empty(n, np.int32)
        at = 0
        for file_index, start, stop in ranges:
            out[at : at + stop - start] = every[start:stop]
            source[at : at + stop - start] = file_index
            at += stop - start
        out.flush()
        del out
        np.save(entry / f"{name}_source.npy", source)
    del every
    raw_path.unlink()

    val_files = sorted({loaded[i][0] for i, _, _ in val_ranges})
    train_files = sorted({loaded[i][0] for i, _, _ in train_ranges})
    return {
        "source": "folder", "folder": str(folder), "searched": searched,
        "files_found": len(files), "files_loaded": len(loaded) + len(silent), "files_skipped": len(skipped),
        "skipped": skipped, "silent_files": silent, "padded_files": padded, "files_ignored": len(others),
        "seconds_loaded": round(seconds, 3), "hop": hop, "gate_dbfs": audio.SILENCE_DBFS,
        "grains_cut": cut, "grains_kept": total, "grains_dropped_silent": dropped,
        "split": split, "val_fraction": val_fraction, "seed": seed,
        "train_files": len(train_files), "val_files": len(val_files), "val_file_names": val_files,
        "train_grains": sum(b - a for _, a, b in train_ranges),
        "val_grains": sum(b - a for _, a, b in val_ranges),
        "source_names": [name for name, _, _ in loaded],
    }


def _split(
    loaded: list[tuple[str, int, int]], hop: int, val_fraction: float, seed: int
) -> tuple[str, list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """(how, train ranges, val ranges); a range is (file index, first grain, end grain) in the raw file."""
    everything = [(i, start, start + count) for i, (_, start, count) in enumerate(loaded)]
    if val_fraction == 0:
        return "none (val_fraction 0)", everything, []
    by_file = _split_by_file(loaded, everything, val_fraction, seed)
    whole = len({i for i, _, _ in by_file[1]})
    total = sum(c for _, _, c in loaded)
    share = sum(b - a for _, a, b in by_file[1]) / total if total else 0.0
    if len(loaded) >= 2 * MIN_VAL_FILES and share <= 2 * val_fraction:
        return "by file", *by_file
    why = (f"by file, {whole} of {len(loaded)} file{'s' if len(loaded) != 1 else ''} would validate"
           + (f", {share:.0%} of the grains" if share > 2 * val_fraction else ""))
    # Too few files to validate on whole ones (with two files, one drone would be the whole validation):
    # the end of every file validates instead, with a gap so no grain overlaps both sides.
    gap = -(-GRAIN_SIZE // hop) - 1  # grains before the first val grain that still overlap it
    train, val = [], []
    for i, (_, start, count) in enumerate(loaded):
        n_val = max(1, round(val_fraction * count))
        n_train = count - n_val - gap
        if n_train < 1:  # too short to cut in two: all of it trains
            train.append((i, start, start + count))
            continue
        train.append((i, start, start + n_train))
        val.append((i, start + count - n_val, start + count))
    if not val and whole:  # one-shots too short to cut in two: whole files it is, however few
        return f"by file ({whole} validate: the files are too short to split in time)", *by_file
    if not val:
        log.warning("every file is too short to split: the validation set is empty")
        return "none (files too short to split)", everything, []
    return f"by time within each file ({why})", train, val


def _split_by_file(
    loaded: list[tuple[str, int, int]], everything: list[tuple[int, int, int]], val_fraction: float, seed: int
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
    """Whole files to validation in a seeded order until about val_fraction of the grains are there, and
    at least MIN_VAL_FILES files where a third of the files allows it (one file is not a validation)."""
    target = val_fraction * sum(c for _, _, c in loaded)
    min_files = min(MIN_VAL_FILES, len(loaded) // 3)
    val, val_grains = [], 0
    for i in np.random.default_rng(seed).permutation(len(loaded)):
        if (val_grains >= target and len(val) >= min_files) or len(val) == len(loaded) - 1:
            break
        val.append(int(i))
        val_grains += loaded[i][2]
    val_set = set(val)
    train = [r for r in everything if r[0] not in val_set]
    return train, [r for r in everything if r[0] in val_set]


def _hash_files(folder: Path, files: list[Path], progress: bool) -> list[tuple[str, str]]:
    sizes = [(folder / f).stat().st_size for f in files]
    hashed = []
    with tqdm(total=sum(sizes), desc="hashing audio", unit="B", unit_scale=True, leave=False,
              disable=not progress) as bar:
        for rel in files:
            h = hashlib.sha256()
            with open(folder / rel, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
                    bar.update(len(block))
            hashed.append((str(rel), h.hexdigest()))
    return hashed


# --- the cache ------------------------------------------------------------------------------------


def _sha256_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _write_meta(entry: Path, fingerprint: str, source_names: list[str], summary: dict) -> None:
    meta = {"fingerprint": fingerprint, "source_names": source_names, "summary": summary}
    (entry / "meta.json").write_text(json.dumps(meta, indent=1))


class _Cache:
    """Directories <root>/grains-<fingerprint>, each written whole then renamed into place (atomic)."""

    def __init__(self, root: Path):
        self.root = root

    def _entry(self, fingerprint: str) -> Path:
        return self.root / f"grains-{fingerprint[:32]}"

    def _key_file(self, listing_key: str) -> Path:
        return self.root / "listings" / listing_key[:32]

    def fingerprint_for(self, listing_key: str) -> str | None:
        try:
            return self._key_file(listing_key).read_text().strip() or None
        except OSError:
            return None

    def remember(self, listing_key: str, fingerprint: str) -> None:
        try:
            path = self._key_file(listing_key)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(fingerprint)
            tmp.replace(path)
        except OSError as e:  # a read-only cache costs speed, never data
            log.warning("could not write the grain cache index in %s (%s)", self.root, e)

    def load(self, fingerprint: str, status: str = "hit") -> GrainSet | None:
        entry = self._entry(fingerprint)
        try:
            meta = json.loads((entry / "meta.json").read_text())
            if meta["fingerprint"] != fingerprint:
                return None
            arrays = {name: np.load(entry / f"{name}.npy", mmap_mode="r")
                      for name in ("train", "val", "train_source", "val_source")}
            params = {}
            for split in ("train", "val"):
                p = entry / f"{split}_params.npz"
                if p.exists():
                    with np.load(p) as z:
                        params[split] = {k: z[k] for k in synth.SYNTH_PARAM_NAMES}
        except (OSError, ValueError, KeyError):
            return None
        summary = dict(meta["summary"], cache=status, cache_path=str(entry))
        return GrainSet(
            train=arrays["train"], val=arrays["val"],
            train_source=arrays["train_source"], val_source=arrays["val_source"],
            source_names=meta["source_names"], train_params=params.get("train"),
            val_params=params.get("val"), fingerprint=fingerprint, summary=summary,
        )

    def load_written(self, fingerprint: str) -> GrainSet:
        """The entry just written; failing to read it back is a bug or a full disk, never silent."""
        gs = self.load(fingerprint, status="miss")
        if gs is None:
            raise RuntimeError(f"grain cache entry {self._entry(fingerprint)} could not be read back")
        return gs

    def writer(self, fingerprint: str) -> _EntryWriter:
        return _EntryWriter(self, self._entry(fingerprint))


class _EntryWriter:
    """`with cache.writer(fp) as tmp_dir:` fill tmp_dir; on success it becomes the entry, else vanishes."""

    def __init__(self, cache: _Cache, entry: Path):
        self.cache, self.entry = cache, entry

    def __enter__(self) -> Path:
        try:
            self.cache.root.mkdir(parents=True, exist_ok=True)
            self.tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.cache.root))
        except OSError as e:
            log.warning("grain cache %s is not writable (%s): using a temporary one", self.cache.root, e)
            self.cache.root = Path(tempfile.mkdtemp(prefix="grainbox-cache-"))
            self.entry = self.cache.root / self.entry.name
            self.tmp = Path(tempfile.mkdtemp(prefix=".building-", dir=self.cache.root))
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        shutil.rmtree(self.entry, ignore_errors=True)  # a stale or half-written entry of the same data
        try:
            self.tmp.rename(self.entry)
        except OSError:  # another process finished the same entry first: theirs is as good
            shutil.rmtree(self.tmp, ignore_errors=True)
