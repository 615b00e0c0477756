from pathlib import Path

import pytest
from pydantic import ValidationError

from plait.core.settings import Settings


def test_defaults_live_under_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    assert settings.database_url == f"sqlite:///{tmp_path / 'plait.db'}"
    assert settings.lake == str(tmp_path / "lake")
    assert settings.collect.max_batch_events == 2500
    assert settings.collect.dedup_window_days == 7


def test_toml_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "plait.toml"
    config.write_text(
        'home = "/srv/plait"\n[collect]\ndedup_window_days = 2\nmax_batch_events = 100\n'
    )
    monkeypatch.setenv("PLAIT_CONFIG", str(config))
    monkeypatch.setenv("PLAIT_COLLECT__MAX_BATCH_EVENTS", "50")
    settings = Settings()
    assert settings.home == Path("/srv/plait")
    assert settings.collect.dedup_window_days == 2
    assert settings.collect.max_batch_events == 50
    assert settings.database_url == "sqlite:////srv/plait/plait.db"


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLAIT_HOME", str(tmp_path))
    monkeypatch.setenv("PLAIT_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1/plait")
    settings = Settings()
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.lake == str(tmp_path / "lake")


def test_bad_settings_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "plait.toml"
    config.write_text("[collect]\nmax_event_bytes = -1\n")
    monkeypatch.setenv("PLAIT_CONFIG", str(config))
    with pytest.raises(ValidationError, match="max_event_bytes"):
        Settings()
    monkeypatch.delenv("PLAIT_CONFIG")
    with pytest.raises(ValidationError, match="unknown_setting"):
        Settings(unknown_setting=1)
    # A nice increment outside 0-19 would raise, or raise the upkeep above the server.
    for nice in ("-5", "20"):
        monkeypatch.setenv("PLAIT_SERVER__UPKEEP_NICE", nice)
        with pytest.raises(ValidationError, match="upkeep_nice"):
            Settings()
