"""Zerodha Kite Connect v3: REST, the binary ticker and its codec, the daily login, and the live adapter."""
