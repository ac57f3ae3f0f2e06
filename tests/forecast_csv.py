"""Write a small intensity CSV for a FileSource in tests."""

from __future__ import annotations

from pathlib import Path


def write_forecast_csv(path: Path, start, values, step_minutes: int = 60) -> Path:
    """Write a simple intensity CSV (timestamp with offset, carbon_intensity) for a FileSource."""
    from datetime import timedelta

    lines = ["timestamp,carbon_intensity"]
    for i, value in enumerate(values):
        lines.append(f"{(start + timedelta(minutes=step_minutes * i)).isoformat()},{value}")
    path.write_text("\n".join(lines) + "\n")
    return path
