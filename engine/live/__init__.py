"""Live trading's order side: the order state machine on the broker's word, the fill ledger, and
the brackets that protect positions (they ask the state machine; they keep no order state)."""
