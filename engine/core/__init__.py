"""The engine's pure, jitted core: kernels over plain numpy state, importing nothing of the project."""
