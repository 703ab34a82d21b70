"""The actors: supervisor, task actors, trigger bus, and the retry scheduler."""
