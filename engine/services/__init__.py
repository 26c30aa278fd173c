"""The services every part uses: the journal, the event bus, logs, clocks, the trading calendar and
where the data directory is. Below live, data and research, which use them; above only the core.

May import: ``engine.core``.
"""
