"""A file-backed fake of the Hopsworks model registry (hsml, hopsworks 5), with the real call signatures.

Only what `cryptosentinel.registry_hopsworks.HopsworksRegistry` calls is here; parameter names and defaults are
the real ones (`test_registry_hopsworks.py` checks them against the installed `hsml`). No `**kwargs`,
so a misspelt argument fails here as it would there.

Behaviours kept from the real client:
* `login` -> project -> `get_model_registry()` (a wrong API key is refused, by `FakeHopsworks`).
* `mr.python.create_model(...)` is lazy: nothing exists until `model.save(path)`, which validates the
  name (`[a-zA-Z0-9_]+`) and that every metric is a number, picks the next version (or refuses an
  existing one), uploads the directory's files to `Models/{name}/{version}/Files` and stamps `created`
  (epoch milliseconds).
* `get_model(name, version=None)` warns and defaults to version 1; an unknown model is `None`.
* `get_models(name)` lists every version (empty for an unknown name); `get_best_model(name, metric,
  direction)` sorts on a training metric ('max' or 'min').
* its own failures are `ModelRegistryException` (model registry) besides the store fake's
  `FeatureStoreException` and `RestAPIError`, all declared in `FakeHopsworksRegistry.errors`.
* `model.download(local_path)` copies the files into `local_path`; without it, into a cache
  directory that is reused on the next call (as the real cache is).
"""

from __future__ import annotations

import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from fake_hopsworks import FakeHopsworks, Project


class ModelRegistryException(Exception):
    """Stands in for hopsworks_common.client.exceptions.ModelRegistryException."""


class VersionWarning(Warning):
    """Stands in for hopsworks_common.util.VersionWarning."""


class Model:
    def __init__(self, registry: ModelRegistry, name: str, version: int | None, metrics: dict | None,
                 description: str | None, input_example: Any, model_schema: Any, feature_view: Any,
                 training_dataset_version: int | None, tags: Any):
        self._registry = registry
        self._name, self._version = name, version
        self._training_metrics = metrics
        self._description = description or ""
        self._input_example, self._model_schema = input_example, model_schema
        self._feature_view, self._training_dataset_version, self._tags = feature_view, training_dataset_version, tags
        self._created: int | None = None
        self._id: int | None = None

    name = property(lambda self: self._name)
    version = property(lambda self: self._version)
    training_metrics = property(lambda self: self._training_metrics)
    description = property(lambda self: self._description)
    created = property(lambda self: self._created)
    id = property(lambda self: self._id)
    input_example = property(lambda self: self._input_example)
    model_schema = property(lambda self: self._model_schema)

    @property
    def model_files_path(self) -> Path:
        return self._registry.root / "Models" / self._name / str(self._version) / "Files"

    def save(self, model_path: str, await_registration: int = 480, keep_original_files: bool = False,
             upload_configuration: dict[str, Any] | None = None) -> Model:
        for key, value in (self._training_metrics or {}).items():
            if not isinstance(key, str):
                raise TypeError(f"provided metrics key is of instance {type(key)}, expected a string")
            try:
                float(value)
            except (TypeError, ValueError) as err:
                raise ValueError(f"{value} is not a number, only numbers can be attached as metadata for models.") from err
        if not re.fullmatch(r"[a-zA-Z0-9_]+", self._name):
            raise ModelRegistryException(f"Invalid model name '{self._name}'. Model name must contain only "
                                         "alphanumeric characters and underscores (regex: [a-zA-Z0-9_]+).")
        existing = self._registry._models.get(self._name, {})
        if self._version is None:
            self._version = max(existing, default=0) + 1
        elif self._version in existing:
            raise ModelRegistryException(f"Model with name {self._name} and version {self._version} already exists, "
                                         "please select another version.")
        source = Path(model_path)
        target = self.model_files_path
        target.mkdir(parents=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target / source.name)
        self._created = int(time.time() * 1000)
        self._id = self._registry._next_id()
        self._registry._models.setdefault(self._name, {})[self._version] = self
        self._registry.saves += 1
        return self

    def download(self, local_path: str | None = None) -> str:
        if local_path is None:
            cache = self._registry.root / "cache" / self._name / str(self._version) / str(self._id)
            if not cache.is_dir():
                shutil.copytree(self.model_files_path, cache)
            return str(cache)
        Path(local_path).mkdir(parents=True, exist_ok=True)
        shutil.copytree(self.model_files_path, local_path, dirs_exist_ok=True)
        self._registry.downloads += 1
        return local_path


class PythonModels:
    """What `mr.python` is: the module with `create_model`."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def create_model(self, name: str, version: int | None = None, metrics: dict | None = None,
                     description: str | None = None, input_example: Any = None, model_schema: Any = None,
                     feature_view: Any = None, training_dataset_version: int | None = None,
                     tags: Any = None) -> Model:
        return Model(self._registry, name, version, metrics, description, input_example, model_schema,
                     feature_view, training_dataset_version, tags)


class ModelRegistry:
    DEFAULT_VERSION = 1

    def __init__(self, root: Path):
        self.root = Path(root)
        self._models: dict[str, dict[int, Model]] = {}
        self._ids = 0
        self.saves = 0
        self.downloads = 0
        self.best_model_calls: list[tuple[str, str, str]] = []

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    @property
    def python(self) -> PythonModels:
        return PythonModels(self)

    def get_model(self, name: str, version: int | None = None) -> Model | None:
        if version is None:
            warnings.warn(f"No version provided for getting model `{name}`, defaulting to `{self.DEFAULT_VERSION}`.",
                          VersionWarning, stacklevel=2)
            version = self.DEFAULT_VERSION
        return self._models.get(name, {}).get(version)

    def get_models(self, name: str) -> list[Model]:
        return [self._models[name][v] for v in sorted(self._models.get(name, {}))]

    def get_best_model(self, name: str, metric: str, direction: str) -> Model | None:
        self.best_model_calls.append((name, metric, direction))
        models = [m for m in self.get_models(name) if metric in (m.training_metrics or {})]
        if not models:
            return None
        key = lambda m: float(m.training_metrics[metric])  # noqa: E731
        return max(models, key=key) if direction.lower() == "max" else min(models, key=key)


class MLProject(Project):
    def __init__(self, name: str, root: Path):
        super().__init__(name)
        self._mr = ModelRegistry(Path(root) / name)

    def get_model_registry(self) -> ModelRegistry:
        return self._mr


class FakeHopsworksRegistry(FakeHopsworks):
    """`FakeHopsworks` whose projects also have a model registry, stored under `root`."""

    errors: tuple[type[Exception], ...] = (*FakeHopsworks.errors, ModelRegistryException)

    def __init__(self, root: Path | str, api_key: str = "test-key", project: str = "cryptosentinel"):
        super().__init__(api_key=api_key, project=project)
        self.root = Path(root)

    def login(self, host: str | None = None, port: int = 443, project: str | None = None,
              api_key_value: str | None = None, api_key_file: str | None = None,
              hostname_verification: bool = False, trust_store_path: str | None = None,
              cert_folder: str | None = None, engine: str | None = None) -> Project:
        name = project or self.default_project
        if name not in self.projects:
            self.projects[name] = MLProject(name, self.root)
        return super().login(host=host, port=port, project=project, api_key_value=api_key_value,
                             api_key_file=api_key_file, hostname_verification=hostname_verification,
                             trust_store_path=trust_store_path, cert_folder=cert_folder, engine=engine)

    def registry(self, project: str | None = None) -> ModelRegistry:
        return self.projects[project or self.default_project].get_model_registry()
