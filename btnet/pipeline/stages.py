"""A cache of finished pipeline stages, so a study resumes where it stopped.

A stage is identified by its name and a key hashed from its parameters and the keys of the
stages it depends on. Its folder ``<root>/stages/<name>-<key>/`` receives whatever the stage
writes; ``stage.json`` is written last and atomically, so a stage counts as done only once it
has finished. Re-running a study recomputes nothing; changing an option changes the key of the
stages that use it and of every stage downstream, and only those are recomputed. An interrupted
training stage is continued from its checkpoint, because the trainer runs in the same folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from btnet.io.atomic import atomic_write_text

log = logging.getLogger(__name__)

STAGE_JSON = "stage.json"
CACHE_VERSION = 1


@dataclass
class StageResult:
    name: str
    key: str
    dir: Path
    outputs: dict[str, Any]
    cached: bool
    seconds: float
    label: str = ""  # display name (stages with equal inputs share a folder, not a label)


@dataclass
class StageCache:
    """Runs stages under ``root`` and remembers what was computed and what was reused."""

    root: Path
    history: list[StageResult] = field(default_factory=list)
    on_event: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        # Absolute: stage outputs record paths under it, and a study re-run from another
        # working directory (``--out`` pointing at the same folder) must still find them.
        self.root = Path(self.root).resolve()

    def key(self, name: str, params: dict[str, Any], deps: Sequence[StageResult] = ()) -> str:
        blob = json.dumps(
            {"v": CACHE_VERSION, "name": name, "params": params, "deps": [d.key for d in deps]},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def stage_dir(self, name: str, key: str) -> Path:
        return self.root / "stages" / f"{name}-{key}"

    def lookup(self, name: str, params: dict[str, Any], deps: Sequence[StageResult] = ()) -> StageResult | None:
        key = self.key(name, params, deps)
        path = self.stage_dir(name, key) / STAGE_JSON
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            log.warning("%s is unreadable; the stage will be recomputed", path)
            return None
        return StageResult(name, key, path.parent, data["outputs"], True, data.get("seconds", 0.0))

    def run(
        self,
        name: str,
        params: dict[str, Any],
        fn: Callable[[Path], dict[str, Any]],
        deps: Sequence[StageResult] = (),
        label: str | None = None,
    ) -> StageResult:
        """Return the cached result of this stage, or run ``fn(stage_dir)`` and record it.

        ``name`` and ``params`` decide identity; ``label`` only names it in messages.
        """
        label = label or name
        found = self.lookup(name, params, deps)
        if found is not None:
            found.label = label
            self._emit(f"[cached] {label} ({found.dir.name})")
            self.history.append(found)
            return found
        key = self.key(name, params, deps)
        folder = self.stage_dir(name, key)
        folder.mkdir(parents=True, exist_ok=True)
        self._emit(f"[run] {label} ({folder.name})")
        start = time.perf_counter()
        outputs = fn(folder)
        seconds = time.perf_counter() - start
        record = {
            "name": name,
            "key": key,
            "params": params,
            "deps": {d.name: d.key for d in deps},
            "outputs": outputs,
            "seconds": round(seconds, 2),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        atomic_write_text(folder / STAGE_JSON, json.dumps(record, indent=2, default=str) + "\n")
        result = StageResult(name, key, folder, outputs, False, seconds, label)
        self.history.append(result)
        self._emit(f"[done] {label} in {seconds:.1f}s")
        return result

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"stage": r.label or r.name, "folder": r.dir.name, "cached": r.cached,
             "seconds": round(r.seconds, 1)}
            for r in self.history
        ]

    def _emit(self, message: str) -> None:
        log.info(message)
        if self.on_event is not None:
            self.on_event(message)
