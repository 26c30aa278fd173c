"""Live trading's order side: the venue contract (``venue``), the order state machine on the
broker's word (``orders``), the fill ledger, Kite's order rules, and the engine's live parts, each
owning one concern and seeing the engine only through ``host.Host``: ``protection`` (each position's
stop and target), ``fills`` (fills move positions), ``reconcile`` (against Kite's book), ``watch``
(alarms, re-pricing) and ``restore`` (today from the journal). None keeps order state: they ask the
state machine.

May import: ``engine.core``, ``config``, ``engine.strategies``, ``engine.services``, ``engine.orders``,
``engine.arrays``. Brokers build on it; it never imports a broker.
"""
