"""Generate large, varied, valid behavior programs for compiler benchmarks and tests."""

from __future__ import annotations


def _function(i: int) -> list[str]:
    return [
        f"fn step{i}(a, b) {{",
        f"  let x = a + {i % 97}",
        "  let y = b * 2 + 1",
        "  if x > y and not (x == 0) {",
        "    x = x - y",
        "  } else {",
        "    y = y + x % 3",
        "  }",
        f'  let items = [x, y, {i}, "s{i}", just x, (x, y)]',
        "  let total = 0",
        "  for v in [x, y, 3] {",
        "    total += v % 7",
        "  }",
        "  while y > 100 { y = y / 2 }",
        "  match items {",
        "    [p, q, .._] => { total = total + len(items) }",
        "    _ => { total = 0 }",
        "  }",
        "  return total + y",
        "}",
    ]


def _behavior(i: int) -> list[str]:
    return [
        f"behavior Obj{i} {{",
        "  field count = 0",
        '  field name = "obj"',
        '  on ["inc", n] if n > 0 {',
        f"    count += step{i}(n, {i % 13})",
        "    return count",
        "  }",
        '  on ["get"] { return [name, count] }',
        '  on ["ping", other] { return call(other, ["get"]) }',
        '  on _ { fail "unknown message" }',
        "}",
    ]


def generate(lines: int) -> str:
    """A program of about ``lines`` lines: functions, behaviors and a main that uses them."""
    out: list[str] = ["// generated benchmark program"]
    i = 0
    while len(out) < lines - 8:
        out.extend(_function(i))
        out.extend(_behavior(i))
        i += 1
    out.extend(
        [
            "main {",
            "  let o = create Obj0",
            '  call(o, ["inc", 3])',
            "  atomic {",
            '    call(o, ["inc", 4])',
            "  }",
            '  return call!(o, ["get"])',
            "}",
        ]
    )
    return "\n".join(out) + "\n"


def long_behavior(clauses: int) -> str:
    """One behavior of ``clauses`` guarded clauses that all touch a field, and a main that
    calls it (the shape that made the compiler quadratic: one function, very many blocks)."""
    out = ["behavior Big {", "  field count = 0"]
    out += [
        f'  on ["m{i}", x] if x > {i % 7} {{ count += x + {i}; return count }}'
        for i in range(clauses)
    ]
    return "\n".join([*out, "}", 'main { return call!(create Big, ["m1", 3]) }']) + "\n"
