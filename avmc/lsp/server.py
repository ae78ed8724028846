"""The LSP server (pygls): diagnostics as you type, hover, go-to-definition, completion.

Compiles run on one worker thread, after a short pause in typing (``DEBOUNCE``), so the
event loop keeps answering while a large file compiles; a newer edit cancels the wait of
the older one. Requests about a document wait (boundedly) for its pending compile, so an
answer always describes the text the client has sent.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import PackageNotFoundError, version

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from avm_vm.diagnostics import Span

from .analysis import Analysis, analyse, span_range
from .reference import keywords, words
from .symbols import Symbol

log = logging.getLogger(__name__)

DEBOUNCE = 0.25  # seconds without an edit before a changed document is compiled
REQUEST_WAIT = 30.0  # how long a request waits for its document's pending compile

_SYMBOL_KINDS = {
    "behavior": types.CompletionItemKind.Class,
    "behavior of another .tape file": types.CompletionItemKind.Class,
    "pure function": types.CompletionItemKind.Function,
    "field": types.CompletionItemKind.Field,
}


def _version() -> str:
    try:
        return version("avm-toolchain")
    except PackageNotFoundError:
        return "unknown"


class AvmLanguageServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("avm-lsp", _version())
        self.compiler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="avmc")
        # The latest analysis of each open document that parsed: while the text does not
        # parse, its names still serve hover, definition and completion.
        self.parsed: dict[str, Analysis] = {}
        self.pending: dict[str, asyncio.Task[None]] = {}
        self.shut_down = False

    # ------------------------------------------------------------ compiling

    def schedule(self, uri: str, delay: float) -> None:
        """Compile the document after ``delay`` seconds, replacing a compile still waiting."""
        if self.shut_down:  # the compiler thread is gone; the client only may say exit now
            return
        waiting = self.pending.pop(uri, None)
        if waiting is not None:
            waiting.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._compile(uri, delay))

    async def _compile(self, uri: str, delay: float) -> None:
        await asyncio.sleep(delay)
        document = self.workspace.get_text_document(uri)
        text, number = document.source, document.version
        filename = to_fs_path(uri) or uri
        loop = asyncio.get_running_loop()
        analysis = await loop.run_in_executor(self.compiler, analyse, text, filename)
        # A newer edit cancels this task before it gets here, so the analysis is current.
        if analysis.index is not None:
            self.parsed[uri] = analysis
        diagnostics = [
            types.Diagnostic(
                range=self.client_range(analysis, d.range),
                message=d.message,
                severity=d.severity,
                source=d.source,
            )
            for d in analysis.diagnostics
        ]
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics, version=number)
        )

    def forget(self, uri: str) -> None:
        waiting = self.pending.pop(uri, None)
        if waiting is not None:
            waiting.cancel()
        self.parsed.pop(uri, None)

    async def current(self, uri: str) -> Analysis | None:
        """The document's analysis once its pending compile (if any) has finished.

        An edit arriving meanwhile replaces the compile; then the new one is awaited, all
        within ``REQUEST_WAIT`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + REQUEST_WAIT
        while (waiting := self.pending.get(uri)) is not None and not waiting.done():
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning("answering about %s without waiting for its compile", uri)
                break
            await asyncio.wait({waiting}, timeout=remaining)
        return self.parsed.get(uri)

    # ------------------------------------------------------------ positions

    def client_range(self, analysis: Analysis, server: types.Range) -> types.Range:
        """A range in code points as the client counts (UTF-16 units unless negotiated)."""
        codec = self.workspace.position_codec
        return types.Range(
            codec.position_to_client_units(analysis.lines, server.start),
            codec.position_to_client_units(analysis.lines, server.end),
        )

    def span_to_client(self, analysis: Analysis, span: Span) -> types.Range:
        return self.client_range(analysis, span_range(span, analysis.lines))

    def position(self, analysis: Analysis, client: types.Position) -> tuple[int, int]:
        """A client position as the AST counts: line and column from 1, in code points."""
        at = self.workspace.position_codec.position_from_client_units(
            analysis.lines, types.Position(client.line, client.character)
        )
        return (at.line + 1, at.character + 1)


server = AvmLanguageServer()


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
async def did_open(ls: AvmLanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, 0.0)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: AvmLanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    ls.schedule(params.text_document.uri, DEBOUNCE)


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: AvmLanguageServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.forget(uri)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_HOVER)
async def hover(ls: AvmLanguageServer, params: types.HoverParams) -> types.Hover | None:
    analysis = await ls.current(params.text_document.uri)
    if analysis is None or analysis.index is None:
        return None
    use = analysis.index.use_at(ls.position(analysis, params.position))
    if use is None:
        return None
    if use.symbol is not None:
        text = use.symbol.markdown()
    elif use.name in words() and words()[use.name].kind != "keyword":
        text = words()[use.name].markdown()
    else:
        return None
    return types.Hover(
        contents=types.MarkupContent(kind=types.MarkupKind.Markdown, value=text),
        range=ls.span_to_client(analysis, use.span),
    )


@server.feature(types.TEXT_DOCUMENT_DEFINITION)
async def definition(
    ls: AvmLanguageServer, params: types.DefinitionParams
) -> types.Location | None:
    uri = params.text_document.uri
    analysis = await ls.current(uri)
    if analysis is None or analysis.index is None:
        return None
    use = analysis.index.use_at(ls.position(analysis, params.position))
    if use is None or use.symbol is None:
        return None
    return types.Location(uri=uri, range=ls.span_to_client(analysis, use.symbol.span))


@server.feature(types.TEXT_DOCUMENT_COMPLETION)
async def completion(ls: AvmLanguageServer, params: types.CompletionParams) -> types.CompletionList:
    analysis = await ls.current(params.text_document.uri)
    items = [_word_item(name) for name in words() if name not in keywords()]
    items += [
        types.CompletionItem(label=keyword, kind=types.CompletionItemKind.Keyword)
        for keyword in keywords()
    ]
    if analysis is not None and analysis.index is not None:
        position = ls.position(analysis, params.position)
        items += [_symbol_item(symbol) for symbol in analysis.index.visible_at(position)]
    return types.CompletionList(is_incomplete=False, items=items)


def _word_item(name: str) -> types.CompletionItem:
    word = words()[name]
    return types.CompletionItem(
        label=name,
        kind=types.CompletionItemKind.Function,
        detail=f"{word.kind}: {word.signature}",
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=word.markdown()),
    )


def _symbol_item(symbol: Symbol) -> types.CompletionItem:
    return types.CompletionItem(
        label=symbol.name,
        kind=_SYMBOL_KINDS.get(symbol.kind, types.CompletionItemKind.Variable),
        detail=f"{symbol.kind}: {symbol.signature.splitlines()[0]}",
        documentation=types.MarkupContent(kind=types.MarkupKind.Markdown, value=symbol.markdown()),
    )


@server.feature(types.SHUTDOWN)
def shutdown(ls: AvmLanguageServer, params: None) -> None:
    ls.shut_down = True
    for uri in list(ls.pending):
        ls.forget(uri)
    ls.compiler.shutdown(wait=False, cancel_futures=True)


def serve() -> int:
    """Serve one client over stdin/stdout; the exit status the protocol asks for."""
    server.start_io()
    # The protocol's exit status: 0 after a shutdown request, 1 when the client just left.
    return 0 if server.shut_down else 1
