"""The pipeline's configuration file: TOML with ``${ENV_VAR}`` substitution, validated by pydantic.

Secrets stay out of the file: write ``password = "${LAKEHOUSE_MYSQL_PASSWORD}"`` and set the
variable (``${VAR:-default}`` gives a default for local use). Errors name the offending field
(``sources[1].port``) and never echo a secret.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from connectors.catalog.redshift_config import RedshiftConfig
from connectors.config import FrozenModel
from connectors.dynamodb.config import DynamoDBReplayConfig, DynamoDBSourceConfig
from connectors.lake.config import LakeConfig
from connectors.mysql.config import MySQLSourceConfig
from connectors.postgres.config import PostgresSourceConfig
from connectors.tenancy import TenancyConfig
from connectors.usage import Prices
from pipelines.search.config import SearchConfig

AnySourceConfig = MySQLSourceConfig | PostgresSourceConfig | DynamoDBSourceConfig | DynamoDBReplayConfig
SourceConfig = Annotated[AnySourceConfig, Field(discriminator="kind")]

DEFAULT_CONFIG_FILE = "lakehouse.toml"
CONFIG_ENV = "LAKEHOUSE_CONFIG"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names each bad field and the problem."""


class LakehouseConfig(FrozenModel):
    """Everything a pipeline run needs: the lake and the sources feeding it."""

    lake: LakeConfig = Field(default_factory=LakeConfig)
    sources: tuple[SourceConfig, ...] = Field(default=(), description="CDC sources.")
    search: SearchConfig = Field(
        default_factory=SearchConfig, description="OpenSearch indexing and synonyms."
    )
    redshift: RedshiftConfig = Field(
        default_factory=RedshiftConfig,
        description="Federated and Spectrum schemas and cross-source views (Redshift and the local warehouse).",
    )
    costs: Prices = Field(
        default_factory=Prices,
        description="Price table and endpoint placement for the estimated cost of runs (`lakehouse show`).",
    )
    tenancy: TenancyConfig = Field(
        default_factory=TenancyConfig,
        description="Tenant-owned tables and how each row's tenant is found (`connectors.tenancy`).",
    )

    @model_validator(mode="after")
    def _unique_source_names(self) -> LakehouseConfig:
        names = [s.name for s in self.sources]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"source names must be unique; repeated: {dupes}")
        return self

    @model_validator(mode="after")
    def _tenant_tables_exist(self) -> LakehouseConfig:
        by_name = {s.name: s for s in self.sources}
        for key in self.tenancy.tables:
            source_name, table = key.split(".")
            source = by_name.get(source_name)
            if source is None:
                raise ValueError(f"tenancy.tables.{key!r}: no source named {source_name!r}")
            tables = tuple(getattr(source, "tables", ()) or ())
            if tables and table not in tables:
                raise ValueError(
                    f"tenancy.tables.{key!r}: {table!r} is not among {source_name}'s tables {list(tables)}"
                )
        return self

    def source(self, name: str) -> AnySourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise ConfigError(f"no source named {name!r}; configured: {[s.name for s in self.sources]}")


def _substitute(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(f"{where}: environment variable {name} is not set (referenced as ${{{name}}})")

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, f"{where}.{k}" if where else k) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def parse_config(data: dict[str, Any], origin: str = "<config>") -> LakehouseConfig:
    """Validate a config mapping (already parsed from TOML)."""
    data = _substitute(data, "")
    try:
        return LakehouseConfig.model_validate(data)
    except ValidationError as e:
        lines = []
        for err in e.errors(include_input=False, include_url=False):
            loc = ""
            for part in err["loc"]:
                loc += f"[{part}]" if isinstance(part, int) else (f".{part}" if loc else str(part))
            lines.append(f"  {loc or '<root>'}: {err['msg']}")
        raise ConfigError(f"invalid configuration in {origin}:\n" + "\n".join(lines)) from None


def config_file(path: str | os.PathLike[str] | None = None) -> Path:
    """The config file to read: `path`, else $LAKEHOUSE_CONFIG, else ./lakehouse.toml."""
    return Path(path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_FILE)


def load_config(path: str | os.PathLike[str] | None = None) -> LakehouseConfig:
    """Load the config file (`config_file`)."""
    chosen = config_file(path)
    try:
        raw = tomllib.loads(chosen.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {chosen} not found (set {CONFIG_ENV} or pass --config)") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{chosen}: not valid TOML: {e}") from None
    return parse_config(raw, str(chosen))
