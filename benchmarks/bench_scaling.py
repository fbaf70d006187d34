"""How cost grows with the work: simulated universes of N coins, feature build, training and one inference pass.

For each size N (default 8, 32 and 128 coins, `coin000` ... named, over two years of hourly bars from the simulator)
the benchmark runs every stage in its own subprocess, so a stage's peak memory is its own:

* `ingest` (set-up, reported but not judged): `pipelines.ingest_to_store(store, "synthetic", ...)` into a fresh
  LocalStore: the simulator, the schema check and the integrity gate, the SQLite upsert;
* `build`: `features.build_features` over the whole universe, in memory (the prices read from the store first, not
  timed);
* `features`: `pipelines.update_features(full=True)` into the store (build, change detection, integrity gate, upsert);
* `train`: `pipelines.train` with a bounded model set (`--models`, default `hgb_reg,hgb_clf`: one regressor and one
  classifier of the champion-capable tree families; the full set is six models, with a random forest and two XGBoost
  models, and does not fit the time budget at 128 coins on 2 cores) on the last `--train-days` days of every coin
  (default 90: a per-coin subsample of the two years, so rows still grow linearly in N; measured on 2 busy cores the
  training step costs ~1.3 ms per coin-hour, so 128 coins x 2 years, 1.1M rows, would take ~25 minutes on its
  own); regimes, volatility models, SHAP figures, gates and the hindcast are all included, as the pipeline does them.
  The subsample cuts the feature view only: the volatility models read `risk.price_bars` and see every coin's whole
  history, as in production (so their share of the stage grows with `--days` too);
* `predict`: one `pipelines.predict` pass with `now` just after the last bar (champions loaded, forecasts with
  SHAP contributions, storage, validation, monitoring);
* `dask_features`, `dask_train`, `dask_predict`: the same stages on a local Dask cluster
  (`distributed.LocalCluster(n_workers=--workers, threads_per_worker=1, processes=True)` on 127.0.0.1), each on a
  copy of the store as the local stage found it. The features stage follows the flows' partition: one task computes
  the run's market series (`pipelines.market_series`, what `21_features` does with `write_market`), then
  `flows.coin_parts` cuts the coins into `PARTS_PER_WORKER` x workers parts and each part runs
  `update_features(coins=part, market=series)` (what `21_features` does for a part). Training and inference are one
  notebook each in the flows (not split per coin, see the flows notebook), so on Dask they are one task on a worker:
  the same work plus the transfer. The notebooks, their kernels and Prefect are left out (see bench_orchestration.py
  for those); cluster start-up is reported apart.

Peak memory: the stage process's own `ru_maxrss`, and the peak of the summed RSS of its process tree (psutil, sampled
every 0.2 s): for the Dask stages the tree holds the scheduler and both workers. Growth factor = time(N) / time(previous
N); with 4x the coins, linear growth is 4.0. The verdict per stage compares the per-coin cost across sizes.

    .venv/bin/python benchmarks/bench_scaling.py                          # 8, 32, 128 coins, two years (~25 min)
    .venv/bin/python benchmarks/bench_scaling.py --sizes 8,16 --days 120  # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import ROOT, machine, write_result

STAGES = ("ingest", "build", "features", "train", "predict")
DASK_OF = {"features": "dask_features", "train": "dask_train", "predict": "dask_predict"}  # local stage -> Dask run
DASK_STAGES = tuple(DASK_OF.values())
JUDGED = ("build", "features", "train", "predict", *DASK_STAGES)
WHY = {  # what makes a stage grow faster than the coins, when it does
    "build": "market features (breadth, cross-sectional ranks, the market return) are computed per bar over every "
             "coin present, and the groupby/sort over (coin, ts) is O(R log R) in rows",
    "features": "besides the build, the upsert and change detection merge against the stored rows, and the integrity "
                "gate's checks sort and deduplicate the whole batch",
    "train": "the pooled models see every coin's rows (R = N x bars): tree fits are O(R log R) in sorting and "
             "binning, walk-forward folds refit on growing windows, and the per-coin scores group over all rows",
    "predict": "loading the champions and the SHAP explainer is a fixed cost that the coins share; the monitoring "
               "windows and the per-coin validation read every coin's history",
    "dask_features": "the market series is one task over every coin's prices, and the parts' SQLite writes are "
                     "serialised on the one store file (a single writer), so the workers wait for each other",
    "dask_train": "as train: one task on a worker",
    "dask_predict": "as predict: one task on a worker",
}


# --------------------------------------------------------------------------------------------------------- children
def _settings(data_dir: str, coins: list[str], dask_address: str | None = None) -> Any:
    from cryptosentinel.config import OrchestrationSettings, Settings
    return Settings(data_dir=Path(data_dir), coins=coins, source="synthetic", store_backend="local",
                    registry_backend="local", discord_webhook_url=None, slack_webhook_url=None,
                    orchestration=OrchestrationSettings(dask_address=dask_address))


def _window(days: int) -> tuple[Any, Any]:
    "[start, end): `days` of hourly bars ending at the last full hour (so `predict`'s freshness checks pass)."
    import pandas as pd

    from cryptosentinel.ingest import last_full_bar
    end = last_full_bar("1h") + pd.Timedelta(hours=1)
    return end - pd.Timedelta(days=days), end


def _feature_part(data_dir: str, coins: list[str], part: list[str], market_file: str) -> dict[str, Any]:
    "One Dask task: what the 21_features notebook runs for its part (a worker process, so imports are its own)."
    from cryptosentinel.pipelines import load_market, update_features
    from cryptosentinel.store_hopsworks import open_store
    settings = _settings(data_dir, coins)
    t0 = time.perf_counter()
    with open_store(settings) as store:
        run = update_features(store, coins=part, full=True, settings=settings, market=load_market(market_file))
    return {"part": part, "s": time.perf_counter() - t0, "computed": run["computed"], "store": run["store"]}


def _market_part(data_dir: str, coins: list[str], market_file: str) -> float:
    "The task before the parts: the run's market series, once, saved for the parts (21_features, write_market)."
    from cryptosentinel.pipelines import market_series, save_market
    from cryptosentinel.store_hopsworks import open_store
    settings = _settings(data_dir, coins)
    t0 = time.perf_counter()
    with open_store(settings) as store:
        save_market(market_series(store, coins=coins, full=True, settings=settings), market_file)
    return time.perf_counter() - t0


def _run_dask(stage: str, data_dir: str, n: int, days: int, options: dict[str, Any]) -> dict[str, Any]:
    "A stage on a local Dask cluster: the features in the flows' partition, training and inference as one task."
    from distributed import Client, LocalCluster

    from cryptosentinel.flows import coin_parts
    coins = [f"coin{i:03d}" for i in range(n)]
    t0 = time.perf_counter()
    with LocalCluster(n_workers=options["workers"], threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        client.run(lambda: __import__("cryptosentinel.pipelines"))  # imports on the workers: start-up, not work
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        out: dict[str, Any] = {}
        if stage == "dask_features":
            market_file = str(Path(data_dir) / "market.parquet")
            market_s = client.submit(_market_part, data_dir, coins, market_file, pure=False).result()
            parts = coin_parts(coins, _settings(data_dir, coins, cluster.scheduler_address))
            done = client.gather(client.map(_feature_part, [data_dir] * len(parts), [coins] * len(parts), parts,
                                            [market_file] * len(parts), pure=False))
            out = {"parts": len(parts), "market_s": market_s, "part_s_median": sorted(d["s"] for d in done)[len(done) // 2],
                   "rows": sum(d["computed"] for d in done),
                   "rows_written": sum(d["store"].get("inserted", 0) + d["store"].get("updated", 0) for d in done)}
        else:
            out = client.submit(_local_stage, stage.removeprefix("dask_"), data_dir, n, days, options,
                                pure=False).result()
        work = time.perf_counter() - t1
        worker_rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return out | {"seconds": work, "startup_s": startup, "worker_maxrss_mb": {k: v / 1024 for k, v in worker_rss.items()}}


def child(stage: str, data_dir: str, n: int, days: int, options: dict[str, Any]) -> dict[str, Any]:
    "Run one stage in this (child) process; what it measured."
    import logging
    logging.basicConfig(level=logging.WARNING)
    return _run_dask(stage, data_dir, n, days, options) if stage in DASK_STAGES else _local_stage(
        stage, data_dir, n, days, options)


def _local_stage(stage: str, data_dir: str, n: int, days: int, options: dict[str, Any]) -> dict[str, Any]:
    "One stage in this process (the child, or a Dask worker); its seconds and what it made."
    coins = [f"coin{i:03d}" for i in range(n)]
    settings = _settings(data_dir, coins)
    out: dict[str, Any] = {}
    from cryptosentinel import pipelines
    from cryptosentinel.features import build_features
    from cryptosentinel.registry_hopsworks import open_registry
    from cryptosentinel.store import PRICES
    from cryptosentinel.store_hopsworks import open_store
    start, end = _window(days)
    with open_store(settings) as store:
        if stage == "ingest":
            t0 = time.perf_counter()
            run = pipelines.ingest_to_store(store, "synthetic", coins=coins, start=start, end=end, settings=settings)
            out = {"seconds": time.perf_counter() - t0, "rows": run["rows"]}
        elif stage == "build":
            t0 = time.perf_counter()
            prices = store.read(PRICES, coins=coins)
            read = time.perf_counter() - t0
            t0 = time.perf_counter()
            built = build_features(prices, max_gap=pipelines.max_gap(settings))
            out = {"seconds": time.perf_counter() - t0, "read_s": read, "rows": len(built)}
        elif stage == "features":
            t0 = time.perf_counter()
            run = pipelines.update_features(store, coins=coins, full=True, settings=settings)
            out = {"seconds": time.perf_counter() - t0, "rows": run["computed"], "store": run["store"]}
        elif stage == "train":
            import functools

            from cryptosentinel import fitting
            models = options["models"]
            if models is not None:  # the benchmark's bound on the model set: `train` has no `models=` of its own
                pipelines.train_horizon = functools.partial(fitting.train_horizon, models=models)  # type: ignore[assignment]
            train_days = options.get("train_days")
            if train_days and train_days < days:  # a per-coin subsample: the last `train_days` days of every coin
                import pandas as pd
                view = pipelines.training_view(store)
                full_data = type(view).training_data
                cut = end - pd.Timedelta(days=train_days)

                def recent(self: Any, *a: Any, **k: Any) -> Any:
                    frame = full_data(self, *a, **k)
                    return frame[frame["ts"] >= cut].reset_index(drop=True)
                type(view).training_data = recent  # type: ignore[method-assign]
            registry = open_registry(settings)
            t0 = time.perf_counter()
            run = pipelines.train(store, registry, coins=coins, settings=settings, n_folds=options["folds"])
            out = {"seconds": time.perf_counter() - t0, "rows": run["rows"]}
        elif stage == "predict":
            registry = open_registry(settings)
            t0 = time.perf_counter()
            run = pipelines.predict(store, registry, coins=coins, settings=settings, now=end)
            out = {"seconds": time.perf_counter() - t0, "forecasts": len(run["forecasts"]),
                   "refused": len(run["refused"])}
    return out


# ----------------------------------------------------------------------------------------------------------- parent
def _tree_rss(proc: Any) -> int:
    import psutil
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_stage(stage: str, data_dir: Path, n: int, days: int, options: dict[str, Any], log: Path) -> dict[str, Any]:
    "Run a stage in a child process: its wall time, its own peak RSS and its process tree's peak RSS."
    cmd = [sys.executable, __file__, "--child", stage, "--data-dir", str(data_dir), "--n", str(n),
           "--days", str(days), "--options", json.dumps(options)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRYPTOSENTINEL_")}
    env |= {"CRYPTOSENTINEL_DATA_DIR": str(data_dir), "CRYPTOSENTINEL_SOURCE": "synthetic",  # the checks read
            "CRYPTOSENTINEL_COINS": ",".join(f"coin{i:03d}" for i in range(n)),  # the process settings' coins
            "CRYPTOSENTINEL_STORE_BACKEND": "local", "CRYPTOSENTINEL_REGISTRY_BACKEND": "local",
            "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    peak = [0]
    t0 = time.perf_counter()
    with open(log, "a") as err:
        err.write(f"\n== N={n} {stage}\n")
        err.flush()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            import psutil
            ps = psutil.Process(proc.pid)

            def sample() -> None:
                while proc.poll() is None:
                    try:
                        peak[0] = max(peak[0], _tree_rss(ps))
                    except psutil.Error:
                        return
                    time.sleep(0.2)
            threading.Thread(target=sample, daemon=True).start()
        except ImportError:
            pass
        stdout, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"stage {stage} (N={n}) failed with status {proc.returncode}; see {log}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(wall_s=wall, tree_peak_mb=peak[0] / 2**20 or None)
    return result


def _fmt(v: Any, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def verdicts(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, str]:
    "Per stage: is the per-coin cost flat across sizes (linear growth), and if not, why."
    out = {}
    for stage in JUDGED:
        got = {r["n"]: r for r in rows if r["stage"] == stage and r.get("seconds")}
        ns = [n for n in sizes if n in got]
        if len(ns) < 2:
            continue
        a, b = ns[0], ns[-1]
        coin_ratio = b / a
        time_ratio = got[b]["seconds"] / got[a]["seconds"]
        exponent = __import__("math").log(time_ratio) / __import__("math").log(coin_ratio)
        per = ", ".join(f"{got[n]['seconds'] / n:.3f}" for n in ns)
        head = (f"{a}->{b} coins ({coin_ratio:.0f}x): time x{time_ratio:.1f}, growth ~ N^{exponent:.2f}; "
                f"s per coin {per}. ")
        if exponent < 0.8:
            verdict = ("sublinear: a fixed cost per call (pandas and SQLite set-up, the DeepChecks suites, loading "
                       "models and explainers, monitoring windows) still dominates at these sizes, so the per-coin "
                       "cost falls as N grows; the slope at the larger sizes is the one to read")
        elif exponent <= 1.2:
            verdict = "close to linear in coins"
        else:
            verdict = f"superlinear: {WHY[stage]}"
        out[stage] = head + verdict
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="8,32,128", help="comma-separated coin counts (default: 8,32,128)")
    ap.add_argument("--days", type=int, default=730, help="days of hourly bars per coin (default: two years)")
    ap.add_argument("--folds", type=int, default=4, help="walk-forward folds of the training stage")
    ap.add_argument("--models", default="hgb_reg,hgb_clf",
                    help="training's model set; 'all' for every model (too slow for 128 coins on 2 cores)")
    ap.add_argument("--train-days", type=int, default=90,
                    help="train on the last D days of every coin (0: all); a per-coin subsample that keeps rows ~ N")
    ap.add_argument("--no-dask", action="store_true", help="skip the Dask stages")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers (one thread each)")
    ap.add_argument("--tmp", default=None, help="working folder (default: a new temporary folder, removed)")
    ap.add_argument("--label", default=None, help="suffix of the result file")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--options", default="{}", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        out = child(args.child, args.data_dir, args.n, args.days, json.loads(args.options))
        out["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        out["children_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(out, default=str), flush=True)
        return

    sizes = [int(s) for s in args.sizes.split(",")]
    models = None if args.models == "all" else [m for m in args.models.split(",") if m]
    options = {"models": models, "train_days": args.train_days or None, "folds": args.folds,
               "workers": args.workers}
    tmp = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "stages.log"
    print(f"sizes {sizes}, {args.days} days of hourly bars; training: models {models or 'all'}, "
          f"last {args.train_days or args.days} days per coin; stage logs in {log}", flush=True)
    rows: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for n in sizes:
        local = tmp / f"n{n}" / "local"
        shutil.rmtree(tmp / f"n{n}", ignore_errors=True)
        local.mkdir(parents=True)
        for stage in STAGES:
            dask_stage = None if args.no_dask else DASK_OF.get(stage)
            if dask_stage:  # the Dask run starts from the store as the local stage finds it
                shutil.copytree(local, tmp / f"n{n}" / dask_stage)
            r = run_stage(stage, local, n, args.days, options, log)
            rows.append({"n": n, "stage": stage, **r})
            print(f"  N={n:4d} {stage:14s} {r['seconds']:8.2f} s  peak {r['maxrss_mb']:7.0f} MB", flush=True)
            if dask_stage:
                copy = tmp / f"n{n}" / dask_stage
                r = run_stage(dask_stage, copy, n, args.days, options, log)
                rows.append({"n": n, "stage": dask_stage, **r})
                print(f"  N={n:4d} {dask_stage:14s} {r['seconds']:8.2f} s  tree peak "
                      f"{_fmt(r['tree_peak_mb'], '.0f')} MB (cluster start {r['startup_s']:.1f} s)", flush=True)
                shutil.rmtree(copy, ignore_errors=True)
        shutil.rmtree(local, ignore_errors=True)
        if n != sizes[-1]:  # a run stopped part-way still leaves what it measured
            write_result("scaling" + (f"-{args.label}" if args.label else ""),
                         {"partial": True, "sizes_done": sorted({r["n"] for r in rows}), "days": args.days,
                          "options": options, "stages": rows})

    # the table: one row per (N, stage); the Dask columns are the Dask run of the same stage
    by = {(r["n"], r["stage"]): r for r in rows}
    table = []
    for stage in STAGES:
        prev = None
        for n in sizes:
            r = by[(n, stage)]
            d = by.get((n, DASK_OF.get(stage, "")))
            dp: dict[str, Any] | None = by.get((prev["n"], DASK_OF.get(stage, ""))) if prev else None
            table.append({"n": n, "stage": stage, "local_s": r["seconds"], "local_peak_mb": r["maxrss_mb"],
                          "dask_s": d["seconds"] if d else None, "dask_tree_peak_mb": d["tree_peak_mb"] if d else None,
                          "dask_worker_peak_mb": max(d["worker_maxrss_mb"].values()) if d else None,
                          "dask_parts": d.get("parts") if d else None,
                          "per_coin_s": r["seconds"] / n,
                          "growth": r["seconds"] / prev["seconds"] if prev else None,
                          "dask_growth": d["seconds"] / dp["seconds"] if d and dp else None})
            prev = r
    print(f"\n{'N':>5} {'stage':9} {'local s':>8} {'peak MB':>8} {'dask s':>8} {'tree MB':>8} {'wkr MB':>7} "
          f"{'parts':>5} {'s/coin':>7} {'growth':>7} {'dask gr':>7}")
    for t in table:
        print(f"{t['n']:5d} {t['stage']:9} {t['local_s']:8.1f} {t['local_peak_mb']:8.0f} {_fmt(t['dask_s']):>8} "
              f"{_fmt(t['dask_tree_peak_mb'], '.0f'):>8} {_fmt(t['dask_worker_peak_mb'], '.0f'):>7} "
              f"{_fmt(t['dask_parts'], 'd'):>5} {t['per_coin_s']:7.3f} {_fmt(t['growth'], '.2f'):>7} "
              f"{_fmt(t['dask_growth'], '.2f'):>7}")
    print("peak MB: the local stage's own peak RSS; tree MB: the Dask stage's process tree (scheduler, workers) "
          "summed; wkr MB: the largest worker's own peak; parts: the features' parts of coins (after the market "
          "task); growth: time / previous size's")
    found = verdicts(rows, sizes)
    print()
    for stage, text in found.items():
        print(f"{stage}: {text}")
    total = time.perf_counter() - t_all
    print(f"\ntotal {total:.0f} s")
    write_result("scaling" + (f"-{args.label}" if args.label else ""), {
        "sizes": sizes, "days": args.days, "coins": "coin000..: simulator default profile", "options": options,
        "training_bound": f"models {models or 'all'}; last {args.train_days or args.days} days of every coin",
        "table": table, "stages": rows, "verdicts": found, "total_s": total, "machine": machine()})
    if not args.tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
