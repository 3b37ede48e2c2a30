"""Metric records: JSONL (every record) and CSV (one file per record kind), rank 0 only.

On resume the files are cut back to the checkpoint's step, so a run that was killed and resumed
leaves the same log an uninterrupted one would have.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class MetricLogger:
    def __init__(self, folder: Path, enabled: bool = True, tensorboard: bool = False):
        self.folder = Path(folder)
        self.enabled = enabled
        self.jsonl = self.folder / "metrics.jsonl"
        self._tb = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.folder / "tensorboard"))
            except Exception as exc:  # tensorboard is optional
                log.warning("TensorBoard logging disabled: %s", exc)

    def truncate_after(self, step: int) -> None:
        """Drop records newer than ``step`` (left by a run that died after its checkpoint)."""
        if not self.enabled or not self.jsonl.is_file():
            return
        keep = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if int(rec.get("step", 0)) <= step:
                keep.append(rec)
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in keep))
        for path in self.folder.glob("*.csv"):
            path.unlink()
        for rec in keep:
            self._write_csv(rec)

    def _write_csv(self, record: dict[str, Any]) -> None:
        path = self.folder / f"{record.get('kind', 'metrics')}.csv"
        flat = {k: v for k, v in record.items() if not isinstance(v, (dict, list))}
        new = not path.is_file()
        if new:
            fields = list(flat)
        else:
            with path.open(newline="") as fh:
                fields = next(csv.reader(fh), list(flat))
        with path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(flat)

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        self._write_csv(record)
        if self._tb is not None:
            kind = record.get("kind", "train")
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self._tb.add_scalar(f"{kind}/{k}", v, record.get("step", 0))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
