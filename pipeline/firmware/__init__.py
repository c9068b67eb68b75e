"""The firmware sources made from a model: the generated C sources (codegen) and the project for the board's
framework (projects: ESP-IDF, Zephyr, Arduino). Imports errors, cache, boards and target.
"""
