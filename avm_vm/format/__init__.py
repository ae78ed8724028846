"""The .tape file format: the instruction set, opcodes, programs, encoding and the verifier."""
