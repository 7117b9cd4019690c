"""A training or fine-tuning schedule as a suite file states it: plain data, no torch.

Kept apart from `harness.train` (the loop itself) so that reading and checking a suite, and the
commands that only read the store (`recommend`, `report`, `compare`), answer without
importing torch: a typo costs a fraction of a second, not the seconds torch takes to load.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    """An optimiser schedule. `milestones` are fractions of the epochs where lr is divided by 10."""

    epochs: float = 1
    lr: float = 0.01
    optimizer: str = "sgd"  # "sgd" | "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 64
    milestones: tuple[float, ...] = ()
    train_samples: int | None = None  # use only the first N training items (smoke runs)
    augment: bool = False  # pad 4 + random crop + horizontal flip (CIFAR recipe)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Recipe:
        """A recipe from a suite's table: unknown keys, wrong types and impossible values are
        one-line UsageErrors naming the key, what it takes and the value."""
        from harness.typecheck import check_fields, show, table

        d = table(d, where)
        fields = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - fields)
        if bad:
            raise UsageError(f"{where}: unknown key '{bad[0]}' "
                             f"(valid: {', '.join(sorted(fields))})")
        check_fields(cls, d, where)
        d = dict(d)
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        if d.get("optimizer", "sgd") not in ("sgd", "adam"):
            raise UsageError(f"{where}: unknown optimizer {show(d['optimizer'])} "
                             "(choose from: adam, sgd)")
        limits = {"epochs": (0, "0"), "lr": (0, "0"), "momentum": (0, "0"),
                  "weight_decay": (0, "0"), "batch_size": (1, "1"), "train_samples": (1, "1")}
        for key, (low, text) in limits.items():
            value = d.get(key)
            if value is not None and not (low <= value < math.inf):
                raise UsageError(f"{where}: {key!r} must be >= {text} and finite, not "
                                 f"{show(value)}")
        if not all(0 <= m <= 1 for m in d.get("milestones", ())):
            raise UsageError(f"{where}: 'milestones' are fractions of the epochs, each in "
                             f"[0, 1], not {show(list(d['milestones']))}")
        return cls(**d)
