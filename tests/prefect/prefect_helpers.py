"""Builders the Prefect tests share: CSV forecasts, deployments and runs on the test server."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path


def write_csv(path: Path, start: datetime, values, step: timedelta = timedelta(hours=1)) -> Path:
    """An intensity CSV (timestamp with offset, carbon_intensity) for a FileSource."""
    lines = ["timestamp,carbon_intensity"]
    lines += [f"{(start + step * i).isoformat()},{value}" for i, value in enumerate(values)]
    path.write_text("\n".join(lines) + "\n")
    return path


def unique(prefix: str) -> str:
    """A name no other test uses (deployments and blocks live for the whole session)."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def deploy(flow, name: str | None = None):
    """Register ``flow`` as a deployment on the test server (no worker); returns (deployment id, full name)."""
    name = name or unique("d")
    deployment_id = flow.to_deployment(name=name).apply()
    return deployment_id, f"{flow.name}/{name}"


def create_run(client, deployment_id, scheduled_time: datetime, labels=None):
    """A Scheduled run of the deployment, due at ``scheduled_time`` (its expected start)."""
    from prefect.states import Scheduled

    return client.create_flow_run_from_deployment(
        deployment_id, state=Scheduled(scheduled_time=scheduled_time), labels=labels or {}
    )


def start_run(client, flow, flow_run_id):
    """Start the run in this process as a worker would; returns ``("paused", state)`` or ``("done", result)``."""
    from prefect.exceptions import Pause
    from prefect.flow_engine import run_flow

    try:
        result = run_flow(flow, flow_run=client.read_flow_run(flow_run_id))
    except Pause as pause:
        return "paused", pause.state
    return "done", result


def run_logs(client, flow_run_id) -> str:
    """Every log line the server holds for the run, one text."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return "\n".join(entry.message for entry in logs)
