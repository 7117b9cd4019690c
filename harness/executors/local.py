"""`--executor local`: every step in this process, in plan order (a baseline, then each of its
compressions and their measurements), one compressed model in memory at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from harness.plan import Plan


class LocalExecutor:
    name = "local"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def run(self, runner: Any, plan: Plan) -> Iterator[Any]:
        failed: dict[str, str] = {}
        for step in plan.steps:
            blocked = next((failed[k] for k in step.needs if k in failed), None)
            if blocked is not None:
                failed[step.key] = blocked
                if step.kind == "measure":
                    yield runner.failed_step(step, blocked)
                continue
            if runner.taken(step):  # another run on the same store measured it meanwhile
                continue
            result = runner.execute(step)
            if result.error is not None:
                failed[step.key] = result.error
            yield result
