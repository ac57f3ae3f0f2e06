"""The README's and docs/'s Prefect code blocks, run as written (the rest: tests/test_readme_examples.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("prefect", minversion="3.6")  # a bare name could be this folder, as a namespace package

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from docs_blocks import blocks

PREFECT_BLOCKS = [b for b in blocks() if b.lang == "python" and b.uses_prefect]


def test_the_docs_show_prefect_blocks():
    assert len(PREFECT_BLOCKS) >= 4


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in PREFECT_BLOCKS if b.not_run is None])
def test_prefect_block_runs(block, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(block.body)
    # run_name is not __main__: a block's `if __name__ == "__main__": flow.serve(...)` would serve forever
    done = subprocess.run([sys.executable, "-c", f"import runpy; runpy.run_path({str(script)!r}, run_name='example')"],
                          cwd=tmp_path, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{block.id} failed:\n{block.body}\n{done.stdout[-2000:]}{done.stderr[-4000:]}"
