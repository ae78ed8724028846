"""avmc: the AVM behavior-language compiler (source -> Tape IR -> .tape bytecode)."""
