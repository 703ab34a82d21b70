"""Storage: keys, indexes, the LMDB and memory stores, the writer process, damaged files."""
