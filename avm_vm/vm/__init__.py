"""The register VM: the interpreter (trampoline), frames and fuel, the translation of functions
to Python, and the ops.
"""
