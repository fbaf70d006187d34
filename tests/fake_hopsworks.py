"""A pandas-backed fake of the Hopsworks client, with the real call signatures (hopsworks 5 / hsfs).

Only what CryptoSentinel calls is here; the parameter names and defaults are the real ones, and
`test_store_hopsworks.py` checks them against the installed `hopsworks` and `hsfs` packages. No
`**kwargs`, so a misspelt argument fails here as it would there.

Behaviours kept from the real client:
* `login` -> project -> `get_feature_store()`; a wrong or missing API key is refused.
* its own failures are `FeatureStoreException` and `RestAPIError` (declared in `FakeHopsworks.errors`).
* `get_or_create_feature_group` returns a group that has no schema until its first `insert`.
* `insert` lower-cases column names and converts tz-aware times to naive UTC; the offline table is
  upserted on primary key + event time; an online-enabled group keeps the last written row per primary
  key (last write wins); a frame whose columns or types differ from the schema is refused.
* `append_features` takes `Feature`s (a TypeError otherwise, as hsfs), refuses names the group has, and
  gives the stored rows nulls in the new columns; `FakeHopsworks.Feature` is the class to build them with
  (the real one is `hsfs.feature.Feature`).
* feature filters: `>=`, `<`, `==`, ... turn timestamps into `"%Y-%m-%d %H:%M:%S"` UTC strings and
  `isin` JSON-encodes its list, as `hsfs.feature.Feature` does.
* queries join point-in-time: each left row gets the newest right row with event time <= its own.
* feature views: `training_data`, `train_test_split` (time ranges: start inclusive, end exclusive),
  `get_batch_data`, `init_serving` (refused unless every group is online-enabled) and
  `get_feature_vectors` (`entry` is a deprecated alias of `serving_keys`).
"""

from __future__ import annotations

import json
import warnings
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd


class FeatureStoreException(Exception):
    """Stands in for hopsworks_common.client.exceptions.FeatureStoreException."""


class RestAPIError(Exception):
    """Stands in for hopsworks_common.client.exceptions.RestAPIError."""


def _hops_type(s: pd.Series) -> str:
    if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(s.dtype):
        return "timestamp"
    if pd.api.types.is_bool_dtype(s.dtype):
        return "boolean"
    if pd.api.types.is_float_dtype(s.dtype):
        return "double"
    if pd.api.types.is_integer_dtype(s.dtype):
        return "bigint"
    return "string"


def _event_ts(value: Any) -> pd.Timestamp | None:
    """What hsfs' util._convert_event_time_to_timestamp accepts, as a naive UTC Timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return pd.Timestamp(int(value), unit="ms")
    if isinstance(value, str | datetime | date | pd.Timestamp):
        ts = pd.Timestamp(value)
        return ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    raise ValueError(f"cannot convert {value!r} to an event time")


class Feature:
    def __init__(self, name: str, type: str, primary: bool = False, event_time: bool = False):
        self.name, self.type, self.primary, self.event_time = name, type, primary, event_time

    def __repr__(self) -> str:
        return f"Feature({self.name!r}, {self.type!r})"

    __hash__ = object.__hash__

    def _get_filter_value(self, value: Any) -> Any:
        if self.type == "timestamp":
            return _event_ts(value).strftime("%Y-%m-%d %H:%M:%S")
        return value

    def __lt__(self, other):
        return Filter(self, "LESS_THAN", self._get_filter_value(other))

    def __le__(self, other):
        return Filter(self, "LESS_THAN_OR_EQUAL", self._get_filter_value(other))

    def __eq__(self, other):  # type: ignore[override]
        return Filter(self, "EQUALS", self._get_filter_value(other))

    def __ne__(self, other):  # type: ignore[override]
        return Filter(self, "NOT_EQUALS", self._get_filter_value(other))

    def __ge__(self, other):
        return Filter(self, "GREATER_THAN_OR_EQUAL", self._get_filter_value(other))

    def __gt__(self, other):
        return Filter(self, "GREATER_THAN", self._get_filter_value(other))

    def isin(self, other: str | list[Any]):
        return Filter(self, "IN", json.dumps(other))


class Filter:
    def __init__(self, feature: Feature, condition: str, value: Any):
        self._feature, self._condition, self._value = feature, condition, value

    def __and__(self, other):
        return Logic("AND", self, other)

    def __or__(self, other):
        return Logic("OR", self, other)

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        col = df[self._feature.name]
        if self._condition == "IN":
            return col.isin(json.loads(self._value)).to_numpy()
        value = pd.Timestamp(self._value) if self._feature.type == "timestamp" else self._value
        ops = {"LESS_THAN": col < value, "LESS_THAN_OR_EQUAL": col <= value, "EQUALS": col == value,
               "NOT_EQUALS": col != value, "GREATER_THAN_OR_EQUAL": col >= value, "GREATER_THAN": col > value}
        return ops[self._condition].to_numpy()


class Logic:
    def __init__(self, type: str, left_f, right_f):
        self._type, self._left_f, self._right_f = type, left_f, right_f

    def __and__(self, other):
        return Logic("AND", self, other)

    def __or__(self, other):
        return Logic("OR", self, other)

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        left, right = self._left_f.mask(df), self._right_f.mask(df)
        return left & right if self._type == "AND" else left | right


class Query:
    def __init__(self, fg: FeatureGroup, features: list[str]):
        self._left_feature_group, self._left_features = fg, features
        self._filter: Filter | Logic | None = None
        self._joins: list[tuple[Query, list[str], str, str | None]] = []

    def filter(self, f):
        self._filter = f if self._filter is None else self._filter & f
        return self

    def join(self, sub_query: Query, on: list[str] | None = None, left_on: list[str] | None = None,
             right_on: list[str] | None = None, join_type: str | None = "left", prefix: str | None = None):
        if left_on or right_on:
            raise NotImplementedError("the fake joins on `on` (or the matching primary keys) only")
        self._joins.append((sub_query, list(on or self._left_feature_group.primary_key), join_type.upper(), prefix))
        return self

    def _groups(self) -> list[FeatureGroup]:
        return [self._left_feature_group] + [q._left_feature_group for q, *_ in self._joins]

    def _assemble(self, start: Any = None, end: Any = None) -> pd.DataFrame:
        """Left rows (filtered, in [start, end) on the left event time), joined point-in-time."""
        fg = self._left_feature_group
        df = fg._offline()
        if self._filter is not None:
            df = df[self._filter.mask(df)]
        lo, hi = _event_ts(start), _event_ts(end)
        if lo is not None:
            df = df[df[fg.event_time] >= lo]
        if hi is not None:
            df = df[df[fg.event_time] < hi]
        keep = list(dict.fromkeys(fg.primary_key + [fg.event_time] + self._left_features))
        out = df[keep].sort_values(fg.event_time, kind="stable")
        for sub, on, _, prefix in self._joins:
            rfg = sub._left_feature_group
            right = rfg._offline()
            cols = [c for c in sub._left_features if c not in on and c != rfg.event_time]
            renamed = {c: f"{prefix}{c}" if prefix else c for c in cols}
            clash = [renamed[c] for c in cols if renamed[c] in out.columns]
            if clash:
                raise FeatureStoreException(f"feature names clash in join: {clash}")
            right = (right[on + [rfg.event_time] + cols].rename(columns={rfg.event_time: "__rt", **renamed})
                     .sort_values("__rt", kind="stable"))
            out = pd.merge_asof(out, right, left_on=fg.event_time, right_on="__rt", by=on,
                                direction="backward", allow_exact_matches=True).drop(columns="__rt")
        return out.reset_index(drop=True)

    def _features(self) -> list[str]:
        names = list(self._left_features)
        for sub, on, _, prefix in self._joins:
            rfg = sub._left_feature_group
            names += [f"{prefix}{c}" if prefix else c for c in sub._left_features
                      if c not in on and c != rfg.event_time]
        return names

    def read(self, online: bool = False, dataframe_type: str = "default", read_options: dict | None = None,
             start_time=None, end_time=None):
        if online:
            raise NotImplementedError("the fake reads queries offline only")
        for fg in self._groups():
            fg._require_created()
        return self._assemble(start_time, end_time)[self._features()]


class FeatureGroup:
    def __init__(self, fs: FeatureStore, name: str, version: int, primary_key: list[str], event_time: str | None,
                 online_enabled: bool, description: str, parents: list | None):
        self._fs, self.name, self.version = fs, name, version
        self.primary_key = [k.lower() for k in primary_key]
        self.event_time = event_time.lower() if event_time else None
        self.online_enabled, self.description = online_enabled, description
        self.parents = list(parents or [])
        self.id: int | None = None
        self.features: list[Feature] = []
        self.created: str | None = None
        self._data = pd.DataFrame()
        self._online: dict[tuple, dict[str, Any]] = {}
        self.inserts = 0  # how many insert calls reached this group (tests count writes)

    def __repr__(self) -> str:
        return f"FeatureGroup({self.name!r}, {self.version}, {self.primary_key}, {self.event_time!r})"

    def _require_created(self) -> None:
        if self.id is None:
            raise FeatureStoreException(f"feature group {self.name} v{self.version} does not exist yet: insert data first")

    def _offline(self) -> pd.DataFrame:
        self._require_created()
        return self._data.copy()

    def get_feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise FeatureStoreException(f"feature {name!r} not found in {self.name}")

    def select_all(self, include_primary_key: bool = True, include_foreign_key: bool = True,
                   include_partition_key: bool = True, include_event_time: bool = True) -> Query:
        names = [f.name for f in self.features
                 if (include_primary_key or not f.primary) and (include_event_time or not f.event_time)]
        return Query(self, names)

    def select(self, features: list) -> Query:
        names = [f if isinstance(f, str) else f.name for f in features]
        known = {f.name for f in self.features}
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FeatureStoreException(f"features {unknown} not in {self.name}")
        return Query(self, names)

    def read(self, wallclock_time=None, online: bool = False, dataframe_type: str = "default",
             read_options: dict | None = None, start_time=None, end_time=None):
        return self.select_all().read(online=online, start_time=start_time, end_time=end_time)

    def append_features(self, features):
        new = [features] if isinstance(features, Feature) else features
        if not isinstance(new, list) or not all(isinstance(f, Feature) for f in new):
            raise TypeError("The argument `features` has to be of type `Feature` or a list thereof")
        self._require_created()
        have = {f.name for f in self.features}
        clash = [f.name for f in new if f.name in have]
        if clash or len({f.name for f in new}) != len(new):
            raise FeatureStoreException(f"features {clash or [f.name for f in new]} already exist in {self.name}")
        empty = {"double": np.nan, "float": np.nan, "bigint": np.nan, "timestamp": pd.NaT}
        for f in new:
            self.features.append(Feature(f.name.lower(), f.type))
            self._data[f.name.lower()] = pd.Series([empty.get(f.type)] * len(self._data), index=self._data.index,
                                                   dtype=object if f.type not in empty else None)
        return self

    def insert(self, features, overwrite: bool = False, operation: str = "upsert", storage: str | None = None,
               write_options: dict | None = None, validation_options: dict | None = None, wait: bool = False,
               transformation_context: dict | None = None, transform: bool = True, n_processes: int | None = None):
        if not isinstance(features, pd.DataFrame):
            raise NotImplementedError("the fake inserts pandas DataFrames only")
        df = features.copy()
        df.columns = [str(c).lower().replace(" ", "_") for c in df.columns]  # hsfs _autofix_feature_name
        for c in df.columns:
            if isinstance(df[c].dtype, pd.DatetimeTZDtype):
                df[c] = df[c].dt.tz_convert(None)  # hsfs: tz-aware -> naive UTC
        keys = self.primary_key + ([self.event_time] if self.event_time else [])
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise FeatureStoreException(f"primary key / event time {missing} missing from the dataframe")
        if df[keys].isna().any().any():
            raise FeatureStoreException("primary key or event time contains null values")
        types = {c: _hops_type(df[c]) for c in df.columns}
        if not self.features:
            self.features = [Feature(c, t, c in self.primary_key, c == self.event_time) for c, t in types.items()]
            self.id = self._fs._next_id()
            self.created = pd.Timestamp.now(tz="UTC").isoformat()
        else:
            schema = {f.name: f.type for f in self.features}
            if set(schema) != set(types) or any(schema[c] != t for c, t in types.items() if df[c].notna().any()):
                raise FeatureStoreException(f"Features are not compatible with Feature Group schema: "
                                            f"{schema} vs {types}")
        df = df[[f.name for f in self.features]]
        self._data = (pd.concat([self._data, df], ignore_index=True) if len(self._data) else df.reset_index(drop=True))
        self._data = self._data.drop_duplicates(subset=keys, keep="last").reset_index(drop=True)
        if self.online_enabled:
            for row in df.to_dict("records"):
                self._online[tuple(row[k] for k in self.primary_key)] = row  # last write wins
        self.inserts += 1
        return None, None


class FeatureView:
    def __init__(self, fs: FeatureStore, name: str, version: int, query: Query, description: str, labels: list):
        self._fs, self.name, self.version, self.query = fs, name, version, query
        self.description, self.labels = description, list(labels or [])
        self._serving = False
        self.training_datasets = 0

    def _frame(self, start, end, primary_key: bool | None, event_time: bool | None) -> pd.DataFrame:
        for fg in self.query._groups():
            fg._require_created()
        df = self.query._assemble(start, end)
        fg = self.query._left_feature_group
        drop = ([] if primary_key else fg.primary_key) + ([] if event_time else [fg.event_time])
        return df[[c for c in df.columns if c not in drop]]

    def training_data(self, start_time=None, end_time=None, description: str | None = "", extra_filter=None,
                      statistics_config=None, read_options: dict | None = None, spine=None,
                      primary_key: bool = False, event_time: bool = False, training_helper_columns: bool = False,
                      dataframe_type: str | None = "default"):
        self.training_datasets += 1
        return self._frame(start_time, end_time, primary_key, event_time), None

    def train_test_split(self, test_size: float | None = None, train_start="", train_end="", test_start="",
                         test_end="", description: str | None = "", extra_filter=None, statistics_config=None,
                         read_options: dict | None = None, spine=None, primary_key: bool = False,
                         event_time: bool = False, training_helper_columns: bool = False,
                         dataframe_type: str | None = "default"):
        if test_size is not None:
            raise NotImplementedError("the fake splits by time ranges only (test_size shuffles)")
        self.training_datasets += 1
        return (self._frame(train_start, train_end, primary_key, event_time),
                self._frame(test_start, test_end, primary_key, event_time), None, None)

    def get_batch_data(self, start_time=None, end_time=None, read_options: dict | None = None, spine=None,
                       primary_key: bool | None = None, event_time: bool | None = None,
                       inference_helper_columns: bool = False, dataframe_type: str = "default",
                       transformed: bool | None = True):
        return self._frame(start_time, end_time, primary_key, event_time)

    def init_serving(self, training_dataset_version: int | None = None, external: bool | None = None,
                     options: dict | None = None, init_sql_client: bool | None = None,
                     init_rest_client: bool = False):
        offline_only = [fg.name for fg in self.query._groups() if not fg.online_enabled]
        if offline_only:
            raise FeatureStoreException(f"feature groups {offline_only} are not online enabled")
        self._serving = True

    def get_feature_vectors(self, serving_keys: list[dict[str, Any]] | None = None,
                            passed_features: list[dict[str, Any]] | None = None, external: bool | None = None,
                            return_type: str = "list", allow_missing: bool = False, *,
                            entry: list[dict[str, Any]] | None = None):
        if entry is not None:
            if serving_keys is not None:
                raise FeatureStoreException("get_feature_vectors() received both `serving_keys` and `entry`")
            warnings.warn("`entry` is deprecated; use `serving_keys`", DeprecationWarning, stacklevel=2)
            serving_keys = entry
        if not self._serving:
            self.init_serving(external=external)
        left = self.query._left_feature_group
        names = self.query._features()
        rows = []
        for key in serving_keys or []:
            missing = [k for k in left.primary_key if k not in key]
            if missing:
                raise FeatureStoreException(f"serving key {missing} missing from {key}")
            row = left._online.get(tuple(key[k] for k in left.primary_key))
            if row is None:
                if allow_missing:
                    rows.append([key.get(n) for n in names])
                continue
            values = dict(row)
            for sub, on, _, prefix in self.query._joins:
                right = sub._left_feature_group._online.get(tuple(row[k] for k in on))
                if right is None and not allow_missing:
                    raise FeatureStoreException(f"no row for {key} in {sub._left_feature_group.name}")
                for c in sub._left_features:
                    values[f"{prefix}{c}" if prefix else c] = None if right is None else right[c]
            rows.append([values.get(n) for n in names])
        if return_type == "pandas":
            return pd.DataFrame(rows, columns=names)
        if return_type == "list":
            return rows
        raise NotImplementedError(f"the fake returns lists or pandas, not {return_type!r}")


class FeatureStore:
    def __init__(self, project: Project):
        self._project = project
        self._groups: dict[tuple[str, int], FeatureGroup] = {}
        self._views: dict[tuple[str, int], FeatureView] = {}
        self._ids = 0

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def get_or_create_feature_group(self, name: str, version: int, description: str | None = "",
                                    online_enabled: bool | None = False, time_travel_format: str | None = None,
                                    partition_key: list[str] | None = None, primary_key: list[str] | None = None,
                                    foreign_key: list[str] | None = None, embedding_index=None,
                                    hudi_precombine_key: str | None = None, features: list | None = None,
                                    statistics_config=None, expectation_suite=None, event_time: str | None = None,
                                    stream: bool | None = False, parents: list | None = None):
        key = (name, version)
        if key not in self._groups:
            self._groups[key] = FeatureGroup(self, name, version, list(primary_key or []), event_time,
                                             bool(online_enabled), description or "", parents)
        return self._groups[key]

    def get_feature_group(self, name: str, version: int = None):
        try:
            return self._groups[(name, version or 1)]
        except KeyError:
            raise FeatureStoreException(f"feature group {name} v{version} not found") from None

    def get_or_create_feature_view(self, name: str, query: Query, version: int, description: str | None = "",
                                   labels: list[str] | None = None, inference_helper_columns: list[str] | None = None,
                                   training_helper_columns: list[str] | None = None,
                                   transformation_functions: dict | None = None):
        key = (name, version)
        if key not in self._views:  # an existing view is returned as it is, as the real one does
            for fg in query._groups():
                fg._require_created()
            self._views[key] = FeatureView(self, name, version, query, description or "", labels or [])
        return self._views[key]

    def get_feature_view(self, name: str, version: int = None):
        try:
            return self._views[(name, version or 1)]
        except KeyError:
            raise FeatureStoreException(f"feature view {name} v{version} not found") from None


class Project:
    def __init__(self, name: str):
        self.name = name
        self._fs = FeatureStore(self)

    def get_feature_store(self, name: str | None = None) -> FeatureStore:
        return self._fs


class FakeHopsworks:
    """Stands in for the `hopsworks` module: `FakeHopsworks(api_key="k").login(...)`.

    `errors` are the client's own exception types (the real ones live in
    `hopsworks_common.client.exceptions`); `cryptosentinel.store_hopsworks.hopsworks_errors(fake.login)`
    reads them, so only these become user errors. A fake of another service adds its own.
    """

    errors: tuple[type[Exception], ...] = (FeatureStoreException, RestAPIError)
    Feature = Feature  # what `fg.append_features` takes (hsfs.feature.Feature in the real client)

    def __init__(self, api_key: str = "test-key", project: str = "cryptosentinel"):
        self.api_key, self.default_project = api_key, project
        self.projects: dict[str, Project] = {}
        self.logins: list[dict[str, Any]] = []

    def login(self, host: str | None = None, port: int = 443, project: str | None = None,
              api_key_value: str | None = None, api_key_file: str | None = None,
              hostname_verification: bool = False, trust_store_path: str | None = None,
              cert_folder: str | None = None, engine: str | None = None) -> Project:
        self.logins.append({"host": host, "project": project, "api_key_value": api_key_value})
        if api_key_value != self.api_key:
            raise RestAPIError("Metadata operation error: (url: .../auth/session). Server response: "
                               "HTTP code: 401, HTTP reason: Unauthorized")
        name = project or self.default_project
        return self.projects.setdefault(name, Project(name))
