"""The fenced code blocks of the README and docs/, for the tests that run them as written.

A block runs unless the line right above its fence is an HTML comment saying why not:
``<!-- not run: needs a Prefect server -->``. ``<!-- excerpt -->`` marks a JSON block that shows
some of an object's fields (its ``...`` stands for the rest).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

_FENCE = re.compile(r"^(?:<!-- (?P<marker>[^>]*?) -->\n)?```(?P<lang>[\w-]*)\n(?P<body>.*?)^```[ \t]*$",
                    re.MULTILINE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    lang: str
    body: str
    marker: str

    @property
    def id(self) -> str:
        return f"{self.document.name}:{self.line}"

    @property
    def not_run(self) -> str | None:
        """The reason given for not running this block, or None."""
        return self.marker.removeprefix("not run:").strip() if self.marker.startswith("not run:") else None

    @property
    def uses_prefect(self) -> bool:
        return bool(re.search(r"^\s*(from|import) (prefect|carbon_sensors\.prefect)\b", self.body, re.MULTILINE))

    def commands(self, program: str = "carbon-sensors") -> list[str]:
        """The shell commands of a shell block that call ``program`` (continuation lines joined)."""
        joined = re.sub(r"\\\n\s*", " ", self.body)
        return [line.strip() for line in joined.splitlines() if line.strip().startswith(program + " ")]


def blocks(documents: list[Path] = DOCUMENTS) -> list[Block]:
    found = []
    for document in documents:
        text = document.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            line = text.count("\n", 0, match.start("lang")) + 1
            found.append(Block(document, line, match["lang"], match["body"], (match["marker"] or "").strip()))
    return found
