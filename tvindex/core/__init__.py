"""The shared core: the types and arithmetic every layer speaks (label sets, catalogue records,
label statistics, the one L2 normaliser, the store contract). It imports no other tvindex
package; ``indexer``, ``search``, ``training`` and ``webui`` all stand on it."""
