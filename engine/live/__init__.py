"""Live trading's order side: the venue contract (``venue``), the order state machine on the
broker's word (``orders``), the fill ledger, the caps, the brackets that protect positions (they ask
the state machine; they keep no order state), and the restore of a live day from the journal.

May import: ``engine.core``, ``config``, ``engine.strategies``, ``engine.services``, ``engine.orders``,
``engine.arrays``. Brokers build on it; it never imports a broker.
"""
