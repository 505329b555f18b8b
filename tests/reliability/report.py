"""Write docs/reliability.md from the scenario table: ``python -m tests.reliability.report``."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.reliability.scenarios import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def main() -> int:
    DOC.write_text(render())
    sys.stdout.write(f"wrote {DOC}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
