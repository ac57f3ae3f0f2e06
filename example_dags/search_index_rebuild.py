"""Search-index rebuild every evening, an existing classic operator gated with ``carbon_gated``.

Submitted at 18:00 UTC, the rebuilt index must be live by 06:00 the next morning (12 hours), and a
rebuild takes about two hours. The BashOperator is unchanged; ``carbon_gated(BashOperator)`` makes it
wait for the cleanest two hours of Great Britain's grid first (usually in the windy small hours).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

from carbon_sensors import After, CarbonGate
from carbon_sensors.operators import carbon_gated

GatedBashOperator = carbon_gated(BashOperator)


@dag(
    schedule="0 18 * * *",
    start_date=datetime(2026, 1, 1, tzinfo=UTC),
    catchup=False,
    tags=["carbon-aware", "team:search"],
)
def search_index_rebuild():
    export = BashOperator(task_id="export_documents", bash_command="echo exported 250000 documents")
    rebuild = GatedBashOperator(
        task_id="rebuild_index",
        bash_command="echo rebuilt shards 0-15",
        carbon=CarbonGate(zones="GB", deadline=After(hours=12), expected_duration=timedelta(hours=2)),
    )
    swap = BashOperator(task_id="swap_alias", bash_command="echo alias products -> products_v2")
    export >> rebuild >> swap


search_index_rebuild()
