"""The process: the app (the composition root of ``otrade run``), the session scheduler, the web
server (health, Kite's login callback) and the single-instance lock.

May import: everything in ``engine`` below ``engine.cli``; never ``bot`` (it finds chat transports by
the ``otrade.transports`` entry point).
"""
