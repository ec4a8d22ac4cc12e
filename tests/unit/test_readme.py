"""The README's example job works verbatim: it imports, registers and validates."""

from __future__ import annotations

import re
from pathlib import Path

from jobs_core.registry import build_registry

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_example_registers() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python example"
    namespace: dict[str, object] = {}
    exec(compile(blocks[0], "README.md", "exec"), namespace)
    extension = namespace["MyExtension"]()  # type: ignore[operator]
    registry = build_registry(None, [extension])
    job = registry.resolve("cleanup")
    assert job.key == "my-extension/cleanup"
    assert job.description == "Clean up expired records"
    assert job.cron is not None and job.schedule == "0 0 * * * *"
