"""A trader's strategy file that imports a module of the trader's own: what a compiled loop's name must follow."""

import textwrap
from pathlib import Path

from engine.strategies import catalog_for, default_catalog
from engine.strategies.api import Strategy


def long_above_an_imported_level(tmp_path: Path, monkeypatch, name: str, level: str) -> tuple[Strategy, Path]:
    """Strategy ``name`` in ``tmp_path/strategies``: long above ``level``, a constant it imports from
    ``tmp_path/helpers/{name}_rule.py`` (on the import path; 0.0 until the test writes it again). Returns
    the strategy, as a config beside those folders finds it, and the rule's file."""
    (tmp_path / "helpers").mkdir()
    rule = tmp_path / "helpers" / f"{name}_rule.py"
    rule.write_text(f"{level} = 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "helpers"))
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / f"{name}.py").write_text(textwrap.dedent(f'''
        from {name}_rule import {level}
        from engine.strategies.api import CLOSE, LONG, NONE, Strategy

        strategy = Strategy("{name}", about="long above {level}")


        @strategy.decision
        def decide(x, pos):
            return LONG if x[CLOSE] > {level} else NONE
    '''))
    catalog_for(tmp_path / "otrade.json")
    return default_catalog().get(name), rule
