"""The JIT: hot Tape functions compiled to native code through llvmlite (DESIGN.md §10)."""
