"""Benchmark the whole job on the 8 real hourly coins: ingest, features, train, predict.

Runs the pipeline steps in a temporary data directory, as `cryptosentinel ingest/features/train/predict`
would, and times each. For inference it times, after the champions are loaded, forecasting all coins
and horizons with SHAP explanations and storing them (median of 5 runs), and a single-row SHAP
explanation (median of 200). Peak memory is the process's maximum RSS. Writes reports/bench/pipeline.json.

    .venv/bin/python benchmarks/bench_pipeline.py
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from _common import SHARED, write_result


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def main() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="cs-bench-"))
    os.environ["CRYPTOSENTINEL_DATA_DIR"] = str(data_dir)
    from cryptosentinel import inference
    from cryptosentinel import pipelines as steps
    from cryptosentinel.config import get_settings
    from cryptosentinel.explain_outputs import Explanations
    from cryptosentinel.registry_hopsworks import open_registry
    from cryptosentinel.store_hopsworks import open_store

    get_settings.cache_clear()
    settings = get_settings()
    results: dict = {"data": str(SHARED), "coins": settings.coins, "horizons": settings.horizons}
    with open_store(settings) as store:
        ingest, results["ingest_s"] = timed(steps.ingest_to_store, store, "csv", path=SHARED, settings=settings)
        features, results["features_s"] = timed(steps.update_features, store, settings=settings)
        registry = open_registry(settings)
        trained, results["train_s"] = timed(steps.train, store, registry, settings=settings)
        results["train_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        run, results["predict_step_s"] = timed(steps.predict, store, registry, settings=settings)

        explanations = Explanations(store, settings)
        predictor, results["load_models_s"] = timed(inference.Predictor, registry, settings, explain=explanations)
        vectors, _ = steps.training_view(store).latest_vectors(settings.coins)
        sources = store.latest("prices", columns=["coin", "ts", "source"]).set_index("coin")["source"]
        live = {c: sources[c] in inference.LIVE_SOURCES for c in vectors["coin"]}
        served = next(iter(predictor.models.values()))
        explained = served.challenger if served.regression.is_constant else served.regression
        explanations.explainer(explained)  # built once, like the API's lifespan would
        loops = []
        for _ in range(5):
            t0 = time.perf_counter()
            forecasts, _ = predictor.predict(vectors, live)
            inference.record_predictions(store, forecasts)
            loops.append(time.perf_counter() - t0)
        results["predict_all_with_explanations_and_storage_s"] = statistics.median(loops)
        explainer = explanations.explainer(explained)
        row = vectors.iloc[[0]][explained.feature_names]
        singles = []
        for _ in range(200):
            t0 = time.perf_counter()
            explainer.explain(row)
            singles.append(time.perf_counter() - t0)
        results["single_shap_explanation_ms"] = statistics.median(singles) * 1000
        results["explained_model"] = f"{explained.name}@{explained.version}"
        results["walk_forward"] = {h: v["table"] for h, v in trained["horizons"].items()}
        results["gates"] = {h: v["gates"] for h, v in trained["horizons"].items()}
        results["hindcast"] = {h: v["hindcast"] for h, v in trained["horizons"].items()}
        results["predictions_status"] = inference.prediction_status(store, settings.horizons)
        results["monitoring"] = run["monitoring"]
        results["lime_vs_shap"] = run["lime_vs_shap"]
        results["refused"] = run["refused"]
    for key in ("ingest_s", "features_s", "train_s", "train_peak_rss_mib", "predict_step_s", "load_models_s",
                "predict_all_with_explanations_and_storage_s", "single_shap_explanation_ms"):
        print(f"{key:<48} {results[key]:10.3f}")
    for h, v in trained["horizons"].items():
        print(f"\n[{h}]\n{v['summary']}")
    print()
    write_result("pipeline", results)


if __name__ == "__main__":
    main()
