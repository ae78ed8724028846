"""The diagrams render: every example's CFG through Graphviz (`dot -Tsvg`), and every
example's Mermaid trace and CFG through mermaid-cli (Debian's Chromium, headless).

The tools are part of the test setup (`.ci/run` installs them): when one is missing the
tests fail saying what to install. Set AVM_SKIP_RENDER=1 to skip them on purpose.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from avm_vm.cli import main as avm_main
from avmc.cli import main as avmc_main

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.avm"))
RENDER = ROOT / "tools" / "render"
MMDC = RENDER / "node_modules" / ".bin" / "mmdc"
PUPPETEER_CONFIG = RENDER / "puppeteer.json"
MERMAID_CONFIG = RENDER / "mermaid.json"  # lifts Mermaid's size limits for large traces
CHROMIUM = "/usr/bin/chromium"  # the executablePath of tools/render/puppeteer.json
INSTALL = (
    "install the render tools as .ci/run does: `apt-get install -y graphviz chromium` (as "
    "root), then `cd tools/render && PUPPETEER_SKIP_DOWNLOAD=1 npm ci`; or set "
    "AVM_SKIP_RENDER=1 to skip the render tests on purpose"
)

# Escaping, failures with reasons, a tx left open by a failed call, an aborted one, logs and
# long values: what a trace's diagram must survive.
TRICKY = """\
behavior Tricky {
  on ["boom", why] { set_state([why]); fail why }
  on ["open"] { let t = begin(); set_state(["x"]); fail "left open" }
  on x { log(x); return x }
}

main {
  let o = create Tricky
  log("%%{init: {}}%% <b>#1; | end")
  call(o, ["boom", "semi;colon #hash <tag> %% end --> x"])
  call(o, ["open"])
  atomic { call!(o, ["boom", "no"]) } else (e) { log(e) }
  return call!(o, [1, 2, 3, 4, 5, 6, 7, "a long string: 0123456789012345678901234567890123"])
}
"""


def _require(present: bool, what: str) -> None:
    if present:
        return
    # Only an explicit opt-out (a machine without Graphviz or Chromium) skips; .ci/run
    # installs both and never sets it, so there a missing tool fails the test.
    if os.environ.get("AVM_SKIP_RENDER") == "1":
        pytest.skip(f"{what} is missing (AVM_SKIP_RENDER=1)")
    pytest.fail(f"{what} is missing: {INSTALL}", pytrace=False)


def _sources(tmp_path: Path) -> list[Path]:
    """The examples, a 40-hop PingPong and the tricky program."""
    pingpong = (ROOT / "examples" / "pingpong.avm").read_text()
    hops = pingpong.replace('["Ping", 0, 3, q]', '["Ping", 0, 40, q]')
    assert hops != pingpong, "examples/pingpong.avm no longer starts its game as expected"
    extra = {"pingpong40.avm": hops, "tricky.avm": TRICKY}
    for name, text in extra.items():
        (tmp_path / name).write_text(text)
    return [*EXAMPLES, *(tmp_path / name for name in extra)]


def _cfg(source: Path, fmt: str) -> str:
    result = CliRunner().invoke(avmc_main, ["cfg", str(source), "--format", fmt])
    assert result.exit_code == 0, result.output
    return result.output


def _mermaid_trace(source: Path, out: Path) -> str:
    result = CliRunner().invoke(
        avm_main, ["run", str(source), "--trace-format", "mermaid", "--trace-out", str(out)]
    )
    assert result.exit_code == 0, f"{source.name}: {result.output}"
    return out.read_text()


@pytest.mark.parametrize("source", [*EXAMPLES, None], ids=[*(p.stem for p in EXAMPLES), "tricky"])
def test_graphviz_renders_the_cfg(source: Path | None, tmp_path: Path) -> None:
    dot = shutil.which("dot")
    _require(dot is not None, "Graphviz's `dot`")
    if source is None:
        source = tmp_path / "tricky.avm"
        source.write_text(TRICKY)
    run = subprocess.run(
        [dot, "-Tsvg"], input=_cfg(source, "dot"), capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and run.stderr == "", run.stderr  # warnings count as errors
    assert run.stdout.count('class="cluster"') >= 1 and "<svg" in run.stdout


def _render_with_mermaid_cli(charts: list[tuple[str, str]], tmp_path: Path) -> list[str]:
    """Render the (name, diagram) charts in one mermaid-cli run (one browser start, the
    charts of a Markdown file in parallel); fail naming the charts left unrendered.
    Returns each chart's SVG."""
    _require(MMDC.exists(), f"mermaid-cli ({MMDC.relative_to(ROOT)})")
    _require(Path(CHROMIUM).exists(), f"Chromium ({CHROMIUM})")
    document = tmp_path / "diagrams.md"
    document.write_text(
        "".join(f"## {name}\n\n```mermaid\n{text}\n```\n\n" for name, text in charts)
    )
    command = [str(MMDC), "-p", str(PUPPETEER_CONFIG), "-c", str(MERMAID_CONFIG)]
    run = subprocess.run(
        [*command, "-i", str(document), "-o", str(tmp_path / "out.md")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PUPPETEER_SKIP_DOWNLOAD": "1"},
    )
    output = run.stdout + run.stderr
    done = {int(number) for number in re.findall(r"out-(\d+)\.svg", output)}
    missing = [name for index, (name, _) in enumerate(charts, 1) if index not in done]
    assert run.returncode == 0 and "Error" not in output and not missing, (
        f"mermaid-cli stopped with {missing} not rendered (its error names the chart's "
        f"line):\n{output[-3000:]}"
    )
    svgs = [(tmp_path / f"out-{index}.svg").read_text() for index in range(1, len(charts) + 1)]
    for (name, _), svg in zip(charts, svgs, strict=True):
        # Mermaid draws some errors instead of failing: an oversized diagram, for one.
        assert "<svg" in svg and not re.search("Syntax error|Maximum text size", svg), name
    return svgs


def test_mermaid_cli_renders_every_trace(tmp_path: Path) -> None:
    sources = _sources(tmp_path)
    charts = [(s.stem, _mermaid_trace(s, tmp_path / f"{s.stem}.mmd")) for s in sources]
    names = [name for name, _ in charts]
    svgs = dict(zip(names, _render_with_mermaid_cli(charts, tmp_path), strict=True))
    # What the bank's story must show once drawn: the failure's reason and the aborted box.
    assert "insufficient funds" in svgs["bank"] and "tx:1 aborted" in svgs["bank"]
    assert "rolled back" in svgs["tricky"]


@pytest.mark.slow  # the largest diagrams: about 15 s of a loaded machine's Chromium
def test_mermaid_cli_renders_every_cfg(tmp_path: Path) -> None:
    charts = [(source.stem, _cfg(source, "mermaid")) for source in _sources(tmp_path)]
    svgs = _render_with_mermaid_cli(charts, tmp_path)
    assert "insufficient funds" in svgs[[name for name, _ in charts].index("bank")]
