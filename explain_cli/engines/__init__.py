"""Explanation engines, one module per method; the protocol and registry live in :mod:`.base`."""

from explain_cli.engines.base import ENGINES, Attribution, Engine, build_params, engine_fields, get_engine

__all__ = ["ENGINES", "Attribution", "Engine", "build_params", "engine_fields", "get_engine"]
