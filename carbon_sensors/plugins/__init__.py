"""The Airflow UI page, the decision trail writer, metrics and the sensor's extra link.
Airflow adapter: Airflow loads it by entry point, the triggers write the trail; the core and Prefect never import it.

- ``plugin.py``: ``CarbonSensorsPlugin``, registered through the ``airflow.plugins`` entry point: a
  FastAPI app under ``/carbon-sensors`` (every route needs a signed-in Airflow user), a "Carbon"
  page in the navigation, and a "Carbon plan" view on each task instance.
- ``app.py`` and ``render.py``: the pages (server-side HTML and SVG, no JavaScript, no CDN) and CSV.
- ``trail.py``: writes every gate decision to the ledger; the triggerer's through a bounded queue
  flushed from a background thread, so its event loop never waits on the database.
- ``metrics.py``: waiting tasks, wait time, forced starts, energy and carbon through Airflow's
  metrics facade.
- ``links.py``: the operator extra link to a task's carbon plan.

Importing this package imports nothing: each module is imported where it is needed.
"""
