"""Energy and tokens of a task's work: wrap the work in a :class:`Meter`.
Core: the recorder and both adapters import it; it never imports Airflow or Prefect.

>>> from carbon_sensors.metering import Meter, MeterSettings, record_tokens
>>> with Meter(settings=MeterSettings(gpu=False)) as meter:
...     _ = sum(range(100_000))
...     record_tokens(prompt=120, completion=30, model="gpt-4o-mini")
>>> m = meter.measurement
>>> m.energy_kwh > 0, m.tokens[0].model, m.started_at <= m.ended_at
(True, 'gpt-4o-mini', True)

Energy comes from RAPL counters (CPU package, DRAM), NVML counters (NVIDIA GPUs) or, where no
counter can be read, an estimate from CPU time and memory; every component says which, and
``m.notes`` says why something was estimated. Tokens come from :func:`record_tokens`,
:func:`capture_usage`, and the ``usage`` of OpenAI-compatible JSON responses seen by httpx while a
meter is active. Importing this package is cheap: httpx is imported when the first meter starts,
``pynvml`` when a meter looks for GPUs.

Environment: ``CARBON_SENSORS_WATTS_PER_CORE`` and ``CARBON_SENSORS_MEMORY_WATTS_PER_GB`` set the
estimate's watts for a whole worker; ``CUDA_VISIBLE_DEVICES`` narrows the GPUs metered.
"""

from carbon_sensors.metering.meter import Measurement, Meter, MeterSettings
from carbon_sensors.metering.tokens import capture_usage, current_meter, record_tokens

__all__ = ["Measurement", "Meter", "MeterSettings", "capture_usage", "current_meter", "record_tokens"]
