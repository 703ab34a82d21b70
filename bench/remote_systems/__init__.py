"""The pieces of `bench/remote.py`: the task bodies each system runs, a Redis server,
the systems' servers and workers, their client-side submitters, and the client
processes that drive them.

Each system's task module is imported by its own worker processes (and by the
client processes); nothing here is imported by `taskservice`.
"""
