"""Settings: one object with the monitoring thresholds nested, their flat and nested variable names, the merged
stale-data limit, and a data directory that is the same from the repository root and from nbs/."""

from pathlib import Path

import pytest

from cryptosentinel.config import Settings, default_data_dir, get_settings, project_root

pytestmark = pytest.mark.code

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture()
def no_data_dir_variable(monkeypatch):
    monkeypatch.delenv("CRYPTOSENTINEL_DATA_DIR", raising=False)
    get_settings.cache_clear()


def fake_project(root: Path, nbdev: bool = True) -> Path:
    (root / "nbs").mkdir(parents=True)
    table = '[tool.nbdev]\nlib_path = "cryptosentinel"\nnbs_path = "nbs"\n' if nbdev else '[tool.ruff]\nline-length = 100\n'
    (root / "pyproject.toml").write_text('[project]\nname = "other"\n' + table)
    return root


def test_notebooks_and_command_line_share_the_repository_data_dir(monkeypatch, no_data_dir_variable):
    monkeypatch.chdir(REPO)
    at_root = (Path.cwd() / Settings(_env_file=None).data_dir).resolve()
    monkeypatch.chdir(REPO / "nbs")
    in_nbs = (Path.cwd() / Settings(_env_file=None).data_dir).resolve()
    assert at_root == in_nbs == REPO / "data"
    assert Settings(_env_file=None).data_dir == REPO / "data"


def test_data_dir_in_a_project_copy(tmp_path, monkeypatch, no_data_dir_variable):
    root = fake_project(tmp_path / "clone")
    monkeypatch.chdir(root)
    assert default_data_dir() == Path("data")  # at the root: relative, as before
    monkeypatch.chdir(root / "nbs")
    assert project_root() == root.resolve()
    assert get_settings().data_dir == root.resolve() / "data"


def test_data_dir_outside_the_project(tmp_path, monkeypatch, no_data_dir_variable):
    other = fake_project(tmp_path / "other", nbdev=False)
    monkeypatch.chdir(other / "nbs")
    assert project_root() is None and default_data_dir() == Path("data")
    monkeypatch.chdir(tmp_path)
    assert Settings(_env_file=None).data_dir == Path("data")


def test_environment_variable_wins_and_stays_relative_to_the_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO / "nbs")
    monkeypatch.setenv("CRYPTOSENTINEL_DATA_DIR", "scratch")
    assert Settings(_env_file=None).data_dir == Path("scratch")
    monkeypatch.setenv("CRYPTOSENTINEL_DATA_DIR", str(tmp_path / "d"))
    get_settings.cache_clear()
    assert get_settings().data_dir == tmp_path / "d"


def test_monitoring_thresholds_from_flat_and_nested_names(monkeypatch):
    monkeypatch.setenv("CRYPTOSENTINEL_ALERT_COOLDOWN_HOURS", "12")
    monkeypatch.setenv("CRYPTOSENTINEL_ALERT_OPEN_HOURS", "5")
    monkeypatch.setenv("CRYPTOSENTINEL_MONITORING__ALERT_OPEN_HOURS", "2")  # the nested name wins
    monkeypatch.setenv("CRYPTOSENTINEL_MONITORING__ALERT_MOVE_WINDOWS", "24,1")
    ms = Settings(_env_file=None).monitoring
    assert (ms.alert_cooldown_hours, ms.alert_open_hours, ms.alert_move_windows) == (12.0, 2.0, [1, 24])
    assert Settings(_env_file=None, monitoring={"alert_open_hours": 9}).monitoring.alert_open_hours == 9


def test_monitoring_thresholds_from_dotenv(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("CRYPTOSENTINEL_DRIFT_SHARE=0.4\nCRYPTOSENTINEL_MAX_FEATURE_AGE_HOURS=6\n"
                                   "CRYPTOSENTINEL_MONITORING__SKILL_WINDOW=50\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CRYPTOSENTINEL_DRIFT_SHARE", "0.5")  # the environment beats .env
    get_settings.cache_clear()
    ms = get_settings().monitoring
    assert (ms.drift_share, ms.stale_data_hours, ms.skill_window) == (0.5, 6.0, 50)
    assert Settings(_env_file=None).monitoring.stale_data_hours == 3.0


def test_one_stale_data_limit(monkeypatch):
    monkeypatch.setenv("CRYPTOSENTINEL_MAX_FEATURE_AGE_HOURS", "5")
    assert Settings(_env_file=None).monitoring.stale_data_hours == 5.0
    monkeypatch.setenv("CRYPTOSENTINEL_STALE_DATA_HOURS", "2")  # the current name wins over the former one
    assert Settings(_env_file=None).monitoring.stale_data_hours == 2.0
    assert not hasattr(Settings(_env_file=None), "max_feature_age_hours")


def test_one_cache():
    assert get_settings() is get_settings()
    assert get_settings().monitoring is get_settings().monitoring
