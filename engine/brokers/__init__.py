"""Venues, one folder or module each: ``paper`` (simulated fills, the default) and ``kite``
(Zerodha Kite Connect). Each implements ``engine.live.venue.Broker``; adding a broker adds a folder here.

May import: ``engine.core``, ``engine.services``, ``engine.orders``, ``engine.live``.
"""
