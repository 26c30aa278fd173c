"""Pictures for chat: ``/chart`` (today's price, the strategy's indicators, the trades, the working
stop and target), ``/equity`` (today's net P&L through the day, the last 20 days) and the end-of-day
report's picture, as PNG (matplotlib's Agg canvas: no display, no browser).

``today`` gathers what a picture shows (``model``: plain data) from the engine's control API and
arrays, today's recording in the store and the sessions the strategies warmed on; ``draw`` draws it
(matplotlib is imported on the first picture, not at start). What is read from the engine is read on
the event loop (``Charts.price`` and friends, cheap); the returned work reads the disk and draws, and
is meant for a worker thread (``asyncio.to_thread``).

Imports the engine, the data store and the kernels' indicator code below it; the runtime and the
bot call it; the engine never imports it.
"""

from engine.charts.model import Picture
from engine.charts.today import ChartError, Charts

__all__ = ["ChartError", "Charts", "Picture"]
