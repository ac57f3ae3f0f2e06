"""DAG-parse overhead of ``CarbonAwareSensor`` versus an ``EmptyOperator`` in its place.

Run from the repository root::

    .venv/bin/python bench/dag_parse.py [--rounds 15] [--seed 0] [--json-out PATH]

It prints a JSON document on stdout and, as the last line, a one-line summary such as::

    dag_parse: sensor 41.2 ms vs empty 39.8 ms median, ratio 1.035 (target <= 1.10) PASS

The exit code is 0 whether or not the target is met (this is a measurement, not a test); the JSON
has ``"target_met": true/false``. Progress goes to stderr.

Method
------
Airflow's dag-processor keeps Airflow imported in its parent process and parses each DAG file in a
child (``airflow.dag_processing.processor``: ``DagFileProcessorProcess`` -> ``_parse_file`` ->
``BundleDagBag(dag_folder=<file>)``). What a DAG author pays per parse is therefore importing and
executing the DAG file in a process where Airflow is already loaded. To reproduce that, every sample
is a fresh subprocess of this interpreter (``sys.executable``) which, untimed, imports ``airflow.sdk``,
``airflow.dag_processing.dagbag`` and ``airflow.dag_processing.processor`` (the module the parse child
runs in), then times with ``time.perf_counter`` one ``DagBag(dag_folder=<file>)`` and checks that
exactly one DAG loaded with no import errors. DagBag needs no metadata DB for this, so none is created;
``AIRFLOW_HOME`` is a throw-away temp dir and ``AIRFLOW__CORE__LOAD_EXAMPLES=False``.

Note that ``import airflow`` itself already imports the ``carbon_sensors`` package top level (its
``apache_airflow_provider`` entry point is loaded by the providers manager), so, as in a real
deployment, only the Airflow adapter modules (``carbon_sensors.sensors``/``.operators``) are left for
the parse to import. The JSON lists which ``carbon_sensors`` modules were preloaded that way.

Two DAG files are parsed, both generated into a temp dir at run time:

* ``sensor``: ``example_dags/catalog_enrichment.py`` verbatim (``CarbonAwareSensor``);
* ``empty``: the same file with the ``carbon_sensors`` imports replaced by
  ``from airflow.providers.standard.operators.empty import EmptyOperator`` and the
  ``CarbonAwareSensor(...)`` call by ``EmptyOperator(task_id="wait_for_clean_power")`` (done on the
  AST's source positions; everything else is byte-identical, and the result must not import
  ``carbon_sensors``).

The operator modules are *not* pre-imported for the headline figures: importing them is part of the
cost of each file. Airflow's default ``[dag_processor] parsing_pre_import_modules = True`` does
however pre-import, in the parent, every ``airflow.*`` module a DAG file imports, which favours the
baseline (``airflow.providers.standard.operators.empty``) but not ``carbon_sensors``. That case is
measured too, in the same run, as ``parse_airflow_preimport`` (using Airflow's own
``iter_airflow_imports``), but it does not decide ``target_met``.

Secondary figures, same run, same fresh-process setup:

* ``serialize``: ``DagSerialization.to_dict`` of the parsed DAG (the parse child does this next);
* ``module_import``: plain ``import carbon_sensors.sensors`` vs
  ``import airflow.providers.standard.operators.empty``, to show where a difference comes from.

Bytecode: by default the subprocesses run with ``PYTHONPYCACHEPREFIX`` set to a temp dir and
``PYTHONDONTWRITEBYTECODE`` removed, so the untimed warm-up round writes ``.pyc`` files for every module
(Airflow, ``carbon_sensors``, the two DAG files) and the timed rounds load them all from bytecode, as a
deployed, long-running dag-processor does. Nothing is written into the repository. Without this, under
``PYTHONDONTWRITEBYTECODE=1`` an editable ``carbon_sensors`` would be recompiled from source on every
import while Airflow's installed ``.pyc`` files are still used, which charges the sensor variant ~3 ms of
``compile()`` that no deployment pays; ``--inherit-bytecode-env`` measures that case anyway.

All variants are interleaved in a per-round random order (``--seed``) after the untimed warm-up round.
Reported per variant: median, p90, min, max, mean; the headline is the ratio of medians sensor/empty.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_DAG = REPO / "example_dags" / "catalog_enrichment.py"
TARGET_RATIO = 1.10
RESULT_MARKER = "BENCH_RESULT "
SENSOR_MODULE = "carbon_sensors.sensors"
EMPTY_MODULE = "airflow.providers.standard.operators.empty"

# What the dag-processor's parse child already has loaded before it reads a DAG file.
PREAMBLE_MODULES = ("airflow.sdk", "airflow.dag_processing.dagbag", "airflow.dag_processing.processor")

# Runs in each fresh subprocess: argv = mode ("parse"/"import"), target (file/module), preimport ("0"/"1"),
# JSON list of preamble modules. Prints one "BENCH_RESULT {json}" line.
CHILD_CODE = r"""
import importlib, json, sys, time

mode, target, preimport = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
preamble = json.loads(sys.argv[4])
t0 = time.perf_counter()
for name in preamble:
    importlib.import_module(name)
preamble_s = time.perf_counter() - t0
preloaded = sorted(m for m in sys.modules if m.split(".")[0] == "carbon_sensors")
res = {"mode": mode, "preamble_s": preamble_s, "carbon_sensors_preloaded": preloaded}

if mode == "parse":
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    if preimport:
        # What DagFileProcessorProcess.start does in the parent (parsing_pre_import_modules=True).
        from airflow.utils.file import iter_airflow_imports

        res["preimported"] = list(iter_airflow_imports(target))
        for name in res["preimported"]:
            importlib.import_module(name)
    before = set(sys.modules)
    t = time.perf_counter()
    bag = DagBag(dag_folder=target)
    res["elapsed_s"] = time.perf_counter() - t
    new = set(sys.modules) - before
    t = time.perf_counter()
    for dag in bag.dags.values():
        DagSerialization.to_dict(dag)
    res["serialize_s"] = time.perf_counter() - t
    res["dag_ids"] = sorted(bag.dags)
    res["import_errors"] = {str(k): str(v)[-2000:] for k, v in bag.import_errors.items()}
    res["tasks"] = {
        t.task_id: type(t).__module__ + "." + type(t).__name__ for d in bag.dags.values() for t in d.tasks
    }
    res["new_modules"] = len(new)
    res["new_carbon_sensors_modules"] = sorted(m for m in new if m.split(".")[0] == "carbon_sensors")
elif mode == "import":
    before = set(sys.modules)
    t = time.perf_counter()
    importlib.import_module(target)
    res["elapsed_s"] = time.perf_counter() - t
    new = sorted(set(sys.modules) - before)
    res["new_modules"] = len(new)
    res["new_module_names"] = new
else:
    raise SystemExit("unknown mode " + mode)
print("BENCH_RESULT " + json.dumps(res), flush=True)
"""


# --------------------------------------------------------------------------------------------------
# Baseline generation


def make_empty_variant(source: str) -> str:
    """``source`` with the carbon_sensors imports and the CarbonAwareSensor call swapped for EmptyOperator."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def pos(lineno: int, col: int) -> int:
        # ast columns are UTF-8 byte offsets; convert within the line.
        line = lines[lineno - 1]
        return offsets[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))

    cs_imports = [
        node for node in tree.body if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "carbon_sensors"
    ]
    imported_names = {alias.asname or alias.name for node in cs_imports for alias in node.names}
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "CarbonAwareSensor"
    ]
    if len(cs_imports) < 1 or len(calls) != 1 or "CarbonAwareSensor" not in imported_names:
        raise RuntimeError(
            f"unexpected DAG shape: {len(cs_imports)} carbon_sensors imports, {len(calls)} CarbonAwareSensor calls"
        )
    edits: list[tuple[int, int, str]] = []  # (start, end, replacement), applied back to front
    call = calls[0]
    edits.append(
        (
            pos(call.lineno, call.col_offset),
            pos(call.end_lineno, call.end_col_offset),
            'EmptyOperator(task_id="wait_for_clean_power")',
        )
    )
    for i, node in enumerate(cs_imports):
        start = offsets[node.lineno - 1]  # whole lines, which the imports occupy on their own
        end = offsets[node.end_lineno]
        edits.append((start, end, f"from {EMPTY_MODULE} import EmptyOperator\n" if i == 0 else ""))
    out = source
    for start, end, text in sorted(edits, reverse=True):
        out = out[:start] + text + out[end:]

    # The transformation applied, and the result no longer depends on carbon_sensors.
    new_tree = ast.parse(out)
    for node in ast.walk(new_tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            assert all(m.split(".")[0] != "carbon_sensors" for m in mods), "baseline still imports carbon_sensors"
    used = {n.id for n in ast.walk(new_tree) if isinstance(n, ast.Name)}
    assert not (used & imported_names), f"baseline still uses {sorted(used & imported_names)}"
    assert out.count("EmptyOperator(task_id=") == 1 and f"from {EMPTY_MODULE} import EmptyOperator" in out
    return out


# --------------------------------------------------------------------------------------------------
# Running samples


def run_child(mode: str, target: str, preimport: bool, env: dict[str, str], cwd: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-c", CHILD_CODE, mode, target, "1" if preimport else "0", json.dumps(PREAMBLE_MODULES)]
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER) :])
    raise RuntimeError(f"child {mode} {target} failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def check_parse(name: str, res: dict[str, Any]) -> None:
    if res["import_errors"] or len(res["dag_ids"]) != 1:
        raise RuntimeError(f"{name}: expected exactly one DAG and no import errors, got {res['dag_ids']}: {res['import_errors']}")


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    xs = sorted(values)
    if len(xs) == 1:
        return xs[0]
    k = (len(xs) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def summarize(seconds: list[float]) -> dict[str, Any]:
    ms = [s * 1e3 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "min_ms": round(min(ms), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "samples_ms": [round(x, 3) for x in ms],
    }


def compare(a: list[float], b: list[float]) -> dict[str, Any]:
    """a vs b: ratio of medians and the median of the per-round paired differences."""
    ma, mb = statistics.median(a), statistics.median(b)
    return {
        "ratio_of_medians": round(ma / mb, 4),
        "median_diff_ms": round((ma - mb) * 1e3, 3),
        "median_paired_diff_ms": round(statistics.median(x - y for x, y in zip(a, b, strict=True)) * 1e3, 3),
    }


def airflow_version(env: dict[str, str], cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import airflow; print('AFV=' + airflow.__version__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return next((ln[4:] for ln in out.splitlines() if ln.startswith("AFV=")), "unknown")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds per variant (default 15)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the per-round order (default 0)")
    parser.add_argument("--json-out", type=Path, help="also write the JSON result to this file")
    parser.add_argument(
        "--inherit-bytecode-env",
        action="store_true",
        help="keep the caller's PYTHONDONTWRITEBYTECODE/PYTHONPYCACHEPREFIX instead of a warmed temp .pyc cache "
        "(with PYTHONDONTWRITEBYTECODE=1 an editable carbon_sensors is recompiled from source on every import, "
        "while Airflow's installed .pyc files are still used)",
    )
    parser.add_argument("--dag", type=Path, default=EXAMPLE_DAG, help="sensor DAG file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")

    tmp = Path(tempfile.mkdtemp(prefix="carbon_sensors_dag_parse_"))
    try:
        dags = tmp / "dags"
        dags.mkdir()
        home = tmp / "airflow_home"
        home.mkdir()
        sensor_file = dags / "catalog_enrichment_sensor.py"
        empty_file = dags / "catalog_enrichment_empty.py"
        source = args.dag.read_text(encoding="utf-8")
        sensor_file.write_text(source, encoding="utf-8")
        empty_file.write_text(make_empty_variant(source), encoding="utf-8")

        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            }
        )
        if args.inherit_bytecode_env:
            bytecode = (
                f"inherited: PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}, "
                f"PYTHONPYCACHEPREFIX={os.environ.get('PYTHONPYCACHEPREFIX', '')!r}"
            )
        else:
            # Every module (Airflow, carbon_sensors, the DAG files) loads from .pyc written by the warm-up
            # round into a temp prefix, as in a long-running deployment; nothing is written to the repo.
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
            bytecode = "temp PYTHONPYCACHEPREFIX, warmed by the untimed round (all modules load from .pyc)"

        # (key, mode, target, preimport)
        jobs = [
            ("parse/sensor", "parse", str(sensor_file), False),
            ("parse/empty", "parse", str(empty_file), False),
            ("parse_airflow_preimport/sensor", "parse", str(sensor_file), True),
            ("parse_airflow_preimport/empty", "parse", str(empty_file), True),
            ("module_import/sensor", "import", SENSOR_MODULE, False),
            ("module_import/empty", "import", EMPTY_MODULE, False),
        ]
        rng = random.Random(args.seed)
        results: dict[str, list[dict[str, Any]]] = {key: [] for key, *_ in jobs}
        order_log: list[list[str]] = []
        t_start = time.perf_counter()
        for rnd in range(args.rounds + 1):  # round 0 is the untimed warm-up
            order = list(jobs)
            rng.shuffle(order)
            if rnd:
                order_log.append([key for key, *_ in order])
            for key, mode, target, preimport in order:
                res = run_child(mode, target, preimport, env, tmp)
                if mode == "parse":
                    check_parse(key, res)
                if rnd:
                    results[key].append(res)
            label = "warm-up" if rnd == 0 else f"round {rnd}/{args.rounds}"
            print(f"dag_parse: {label} done ({time.perf_counter() - t_start:.0f} s)", file=sys.stderr, flush=True)

        # Both variants must have produced the same DAG shape.
        s0, e0 = results["parse/sensor"][0], results["parse/empty"][0]
        assert s0["dag_ids"] == e0["dag_ids"], (s0["dag_ids"], e0["dag_ids"])
        assert sorted(s0["tasks"]) == sorted(e0["tasks"]), (s0["tasks"], e0["tasks"])
        assert not e0["new_carbon_sensors_modules"], e0["new_carbon_sensors_modules"]

        def times(key: str, field: str = "elapsed_s") -> list[float]:
            return [r[field] for r in results[key]]

        figures: dict[str, Any] = {}
        for group in ("parse", "parse_airflow_preimport", "module_import"):
            s, e = times(f"{group}/sensor"), times(f"{group}/empty")
            figures[group] = {"sensor": summarize(s), "empty": summarize(e), **compare(s, e)}
        for group in ("parse", "parse_airflow_preimport"):
            s, e = times(f"{group}/sensor", "serialize_s"), times(f"{group}/empty", "serialize_s")
            figures[group]["serialize"] = {
                "sensor": summarize(s),
                "empty": summarize(e),
                **compare(s, e),
            }
        figures["parse_airflow_preimport"]["preimported"] = {
            "sensor": results["parse_airflow_preimport/sensor"][0]["preimported"],
            "empty": results["parse_airflow_preimport/empty"][0]["preimported"],
        }
        mi_s, mi_e = results["module_import/sensor"][0], results["module_import/empty"][0]
        figures["module_import"]["new_modules"] = {
            "sensor": mi_s["new_module_names"],
            "empty": mi_e["new_module_names"],
        }

        ratio = figures["parse"]["ratio_of_medians"]
        out: dict[str, Any] = {
            "benchmark": "dag_parse",
            "dag": str(args.dag),
            "rounds": args.rounds,
            "seed": args.seed,
            "target_ratio": TARGET_RATIO,
            "ratio": ratio,
            "target_met": ratio <= TARGET_RATIO,
            "ratio_with_airflow_preimport": figures["parse_airflow_preimport"]["ratio_of_medians"],
            "figures": figures,
            "parse_context": {
                "preamble_modules": list(PREAMBLE_MODULES),
                "preamble_median_ms": round(statistics.median(times("parse/sensor", "preamble_s")) * 1e3, 1),
                "carbon_sensors_preloaded_by_airflow": s0["carbon_sensors_preloaded"],
                "new_carbon_sensors_modules_during_parse": {
                    "sensor": s0["new_carbon_sensors_modules"],
                    "empty": e0["new_carbon_sensors_modules"],
                },
                "new_modules_during_parse": {"sensor": s0["new_modules"], "empty": e0["new_modules"]},
                "tasks": {"sensor": s0["tasks"], "empty": e0["tasks"]},
                "airflow_home": "temp dir (removed), no metadata DB",
                "bytecode": bytecode,
            },
            "environment": {
                "python": platform.python_version(),
                "implementation": platform.python_implementation(),
                "executable": sys.executable,
                "airflow": airflow_version(env, tmp),
                "platform": platform.platform(),
                "cpu_count": os.cpu_count(),
                "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            },
            "order": order_log,
            "wall_s": round(time.perf_counter() - t_start, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    text = json.dumps(out, indent=2)
    if args.json_out:
        args.json_out.write_text(text + "\n", encoding="utf-8")
    print(text)
    p = figures["parse"]
    print(
        f"dag_parse: sensor {p['sensor']['median_ms']:.1f} ms vs empty {p['empty']['median_ms']:.1f} ms median, "
        f"ratio {ratio:.3f} (target <= {TARGET_RATIO:.2f}) {'PASS' if out['target_met'] else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
