"""All settings of the service in one pydantic-settings object, read from `MLFT_*` variables."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLFT_", extra="ignore")

    # Where datasets, models and job working folders live when no object storage is configured.
    data_dir: Path = Path("var")
    # Unset means the embedded default: SQLite in data_dir and a filesystem broker, no servers.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MLFT_DATABASE_URL")
    )
    broker_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BROKER_URL", "MLFT_BROKER_URL")
    )
    # Folder of `<name>.model` files the foundation registry reads when nothing can be downloaded.
    models_dir: Path | None = None
    # Device mace-torch trains on: "cpu" or "cuda".
    device: str = "cpu"
    # In the embedded default the API starts a local Celery worker process beside itself.
    start_embedded_worker: bool = True
    # Upper bound on an uploaded dataset, in bytes.
    max_upload_bytes: int = 512 * 1024 * 1024
    # Browser origins allowed to call the API (CORS), as JSON: '["https://lab.example.org"]'.
    cors_origins: list[str] = []

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'mlft.sqlite').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.data_dir / "foundations"


@lru_cache
def get_settings() -> Settings:
    return Settings()
