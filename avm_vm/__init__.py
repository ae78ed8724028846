"""avm_vm: the AVM runtime: values, bytecode loader and verifier, VM, store, transactions, trace."""
