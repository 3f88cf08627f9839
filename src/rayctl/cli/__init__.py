"""The thin Typer layer: parse arguments, call the package, render results."""
