"""Seeded chaos runs of OTrade's live path against the strict local Kite server.

``python -m tests.chaos --seeds 200`` runs whole accelerated sessions with faults drawn from each
seed and checks the invariants (``tests.chaos.invariants``) after every event; a broken seed prints
its reproducer (``python -m tests.chaos --seed N --verbose``) with its fault schedule and event log.
"""
