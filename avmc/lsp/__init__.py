"""The language server behind `avm lsp`: the compiler's diagnostics, hover, go-to-definition
and completion for .avm files, over the Language Server Protocol (docs/editors.md).

``analysis`` compiles a document, ``symbols`` resolves its names, ``reference`` holds the
descriptions of builtins, instructions and keywords; ``server`` speaks LSP through pygls.
"""
