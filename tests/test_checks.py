"""The static checks: each error and warning on a small program, and clean programs pass."""

from __future__ import annotations

import pytest

from avm_vm.diagnostics import Severity, Span
from avm_vm.format.instructions import BY_SOURCE
from avmc import ast
from avmc.builtins import BUILTINS
from avmc.checks import check
from avmc.parser import parse

VALID = """
behavior Counter {
  field count = 0
  field history = [(1, "a"), just nothing]
  on ["inc"] { count += 1; return count }
  on ["add", n] if n > 0 { count = count + n; return count }
  on ["name", just name, ..rest] { return name ++ str(len(rest)) }
  on (a, [_, .._]) { return a }
  on _ { fail "unknown message" }
}
extern behavior Remote
fn fib(n) { if n < 2 { return n } return fib(n - 1) + fib(n - 2) }
fn is_counter(meta) { return len(meta) > 0 }
fn loops(xs) {
  let total = 0
  for x in xs { if x == 0 { continue } total += x }
  while total > 10 { total -= 1; if total == 5 { break } }
  match xs { [] => { return 0 } [a, ..b] if a > 1 => { return a } _ => { } }
  return total
}
main {
  let c = create Counter
  let r = create Remote under current_controller()
  call(c, ["inc"])
  let answer = call!(c, ["add", fib(10)])
  let found = unsafe scry_meta(is_counter)
  unsafe register_pure("fib2", fib)
  update_pure("fib2", fib)
  let t = begin()
  commit(t)
  atomic under "ctrl" { call(r, [input, sender]) } else (err) { fail err }
  atomic { let inner = 1 } else { }
  while true { atomic { for x in [1] { break } } break }
  let parts = [answer, found, nothing, obj:1, tx:2][1:][:3]
  return (parts[0], not true or false and 1 <= 2)
}
"""


def diagnostics(source: str) -> list[tuple[str, int, str]]:
    return [
        (d.severity.value, d.span.line if d.span else 0, d.message)
        for d in check(parse(source, "t.avm"))
    ]


def errors(source: str) -> list[str]:
    return [message for severity, _, message in diagnostics(source) if severity == "error"]


def main_errors(body: str) -> list[str]:
    return errors("main {\n" + body + "\n}")


def test_a_program_using_every_construct_is_clean() -> None:
    assert diagnostics(VALID) == []


def test_an_empty_module_is_clean() -> None:
    assert check(parse("", "t.avm")) == []


# ---------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("return x", "undefined name 'x'"),
        ("x = 1", "assignment to undeclared variable 'x' (declare it with `let x = ...`)"),
        ("x += 1", "assignment to undeclared variable 'x' (declare it with `let x = ...`)"),
        ("foo(1)", "undefined function 'foo'"),
        ("let v = 1 v(2)", "'v' is a variable, not a function"),
        ("let c = create Nope", "undefined behavior 'Nope'"),
        ("return len", "'len' is a builtin: call it as len(...)"),
        ("return begin", "'begin' is a builtin: call it as begin(...)"),
        ("let x = x", "undefined name 'x'"),
        ("if true { let y = 1 } return y", "undefined name 'y'"),
        ("for x in [] { } return x", "undefined name 'x'"),
    ],
)
def test_undefined_names(body: str, message: str) -> None:
    assert main_errors(body) == [message]


def test_names_of_other_items() -> None:
    source = "fn f() { return 1 } behavior B { on _ { } } main { return [f, B] }"
    assert errors(source) == [
        "'f' is a function: call it as f(...)",
        "'B' is a behavior: write `create B` to make an object",
    ]
    assert errors("fn f() { return create f }") == [
        "create is an AVM instruction, and fn f is pure: instructions may only appear in "
        "behaviors and main",
        "'f' is not a behavior",
    ]


def test_duplicates() -> None:
    source = """
    behavior A { field x = 1 field x = 2 on _ { } }
    fn A() { }
    extern behavior A
    fn f(a, a) { }
    main { }
    main { }
    """
    assert diagnostics(source) == [
        ("error", 2, "duplicate field 'x' in behavior A"),
        ("error", 3, "duplicate definition of 'A' (first defined at line 2)"),
        ("error", 4, "duplicate definition of 'A' (first defined at line 2)"),
        ("error", 5, "duplicate parameter 'a'"),
        ("error", 7, "duplicate main (the first is at line 6)"),
    ]


def test_let_redeclaration_in_the_same_block_only() -> None:
    assert main_errors("let a = 1 let a = 2") == ["'a' is already declared in this block"]
    assert main_errors("let a = 1 if true { let a = 2 }") == []
    assert errors("fn f(a) { let a = 1 }") == ["'a' is already declared in this block"]
    assert errors("behavior B { on [a] { let a = 1 } }") == [
        "'a' is already declared in this block"
    ]
    assert main_errors("for i in [] { let i = 1 }") == ["'i' is already declared in this block"]


def test_pattern_binds_a_name_once() -> None:
    assert errors("behavior B { on [a, (a, b), ..b] { } }") == [
        "'a' is bound twice in this pattern",
        "'b' is bound twice in this pattern",
    ]
    assert main_errors("match 1 { just [x, x] => { } }") == ["'x' is bound twice in this pattern"]
    assert main_errors("match 1 { [_, _, .._] => { } }") == []


@pytest.mark.parametrize("name", ["len", "str", "call", "begin", "label", "now"])
def test_reserved_names(name: str) -> None:
    kind = "a builtin function" if name in BUILTINS else "an AVM instruction"
    message = f"'{name}' is reserved ({kind}): choose another name"
    assert errors(f"fn {name}() {{ }}") == [message]
    assert errors(f"behavior {name} {{ on _ {{ }} }}") == [message]
    assert errors(f"extern behavior {name}") == [message]
    assert errors(f"fn f({name}) {{ }}") == [message]
    assert errors(f"behavior B {{ field {name} = 0 on _ {{ }} }}") == [message]
    assert main_errors(f"let {name} = 1") == [message]
    assert main_errors(f"for {name} in [] {{ }}") == [message]
    assert main_errors(f"match 1 {{ [{name}] => {{ }} }}") == [message]
    assert main_errors(f"atomic {{ }} else ({name}) {{ }}") == [message]


# ---------------------------------------------------------------- fields


def test_fields_belong_to_their_behavior() -> None:
    source = """
    behavior A { field count = 0 on _ { count = count + 1 } }
    behavior B { on _ { return count } }
    fn f() { count = 2 }
    main { return count }
    """
    message = "'count' is a field of behavior A and cannot be used outside it"
    assert diagnostics(source) == [
        ("error", 3, message),
        ("error", 4, message),
        ("error", 5, message),
    ]


@pytest.mark.parametrize("default", ["1 + 1", "x", "[1, y]", "just f()", "(1, create A)"])
def test_field_defaults_must_be_constants(default: str) -> None:
    assert errors(f"behavior A {{ field f = {default} on _ {{ }} }}") == [
        "a field default must be a constant: a literal, or a list, pair or just of constants"
    ]


def test_field_default_span_is_the_default() -> None:
    (diagnostic,) = check(parse("behavior A { field f = 1 + 1 on _ { } }", "t.avm"))
    assert diagnostic.span == Span("t.avm", 1, 24, 1, 29)


# ---------------------------------------------------------------- calls


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("f(1)", "f takes 2 arguments, but 1 was given"),
        ("f(1, 2, 3)", "f takes 2 arguments, but 3 were given"),
        ("len()", "len takes 1 argument, but 0 were given"),
        ("append([1])", "append takes 2 arguments, but 1 was given"),
        ("begin(1, 2)", "begin takes 0 or 1 arguments, but 2 were given"),
        ("call(1)", "call takes 2 arguments, but 1 was given"),
        ("now(1)", "now takes 0 arguments, but 1 was given"),
        ("call!(1, 2, 3)", "call takes 2 arguments, but 3 were given"),
    ],
)
def test_arity(call: str, message: str) -> None:
    assert errors("fn f(a, b) { return a }\nmain { " + call + " }") == [message]


def test_optional_instruction_arguments_may_be_left_out() -> None:
    assert main_errors("begin() begin(1) let t = create A under 1") == ["undefined behavior 'A'"]


def test_extra_arguments_are_still_checked() -> None:
    assert main_errors("now(zzz)") == [
        "now takes 0 arguments, but 1 was given",
        "undefined name 'zzz'",
    ]


@pytest.mark.parametrize("name", sorted(n for n, i in BY_SOURCE.items() if not i.safe))
def test_unsafe_instructions_need_the_prefix(name: str) -> None:
    instruction = BY_SOURCE[name]
    args = ", ".join("f" if p in ("predicate", "function") else "1" for p in instruction.params)
    source = f"fn f(m) {{ return true }}\nmain {{ {name}({args}) }}"
    assert errors(source) == [
        f"{name} is an unsafe instruction (it looks past the objects a behavior is given): "
        f"write `unsafe {name}(...)` to opt in"
    ]
    assert errors(source.replace(f"{name}(", f"unsafe {name}(")) == []


def test_unsafe_message_says_why_and_how() -> None:
    assert main_errors("reflect(obj:1)") == [
        "reflect is an unsafe instruction (it looks past the objects a behavior is given): "
        "write `unsafe reflect(...)` to opt in"
    ]


def test_unsafe_prefix_only_on_unsafe_instructions() -> None:
    assert errors("fn f() { return 1 } main { unsafe f() unsafe len([]) unsafe now() }") == [
        "`unsafe` is only for unsafe instructions, and f is not an instruction",
        "`unsafe` is only for unsafe instructions, and len is not an instruction",
        "now is a safe instruction: remove `unsafe`",
    ]


def test_function_arguments_name_a_fn_of_this_file() -> None:
    source = """
    fn p(meta) { return true }
    main {
      let q = 1
      unsafe scry_deep(q)
      unsafe scry_meta("p")
      update_pure("x", nope)
      unsafe register_pure("x", p)
      update_pure("x", p)
    }
    """
    assert errors(source) == [
        "'q' is not a fn of this file: the predicate of scry_deep must name one",
        "the predicate of scry_meta must be the bare name of a fn of this file",
        "'nope' is not a fn of this file: the function of update_pure must name one",
    ]


# ---------------------------------------------------------------- layers and control flow


@pytest.mark.parametrize(
    ("stmt", "name"),
    [
        ("create A", "create"),
        ("self", "self"),
        ("input", "input"),
        ("sender", "sender"),
        ("call!(obj:1, [])", "call"),
        ("call(obj:1, [])", "call"),
        ("get_state()", "get_state"),
        ('call_pure("f", [])', "call_pure"),
        ("now()", "now"),
        ("unsafe reflect(obj:1)", "reflect"),
    ],
)
def test_instructions_are_refused_in_a_fn(stmt: str, name: str) -> None:
    source = f"behavior A {{ on _ {{ }} }}\nfn f() {{ {stmt} }}"
    assert errors(source) == [
        f"{name} is an AVM instruction, and fn f is pure: instructions may only appear in "
        "behaviors and main"
    ]


def test_atomic_is_refused_in_a_fn() -> None:
    assert errors("fn f() { atomic { } }") == [
        "atomic uses transaction instructions, and fn f is pure: instructions may only "
        "appear in behaviors and main"
    ]


def test_break_and_continue() -> None:
    assert main_errors("break") == ["break outside a loop"]
    assert main_errors("continue") == ["continue outside a loop"]
    assert main_errors("if true { break }") == ["break outside a loop"]
    assert main_errors("while true { atomic { continue } }") == [
        "continue cannot leave an atomic block"
    ]
    assert main_errors("atomic { break }") == ["break outside a loop"]
    assert main_errors("atomic { while true { break } }") == []
    assert main_errors("while true { atomic { } else { break } }") == []
    assert main_errors("while true { match 1 { _ => { continue } } }") == []
    assert errors("fn f() { while true { break } } fn g() { break }") == ["break outside a loop"]


# ---------------------------------------------------------------- warnings


def test_unreachable_code_is_warned_once_per_block() -> None:
    source = "main {\nreturn 1\nlet a = 2\nlet b = 3\n}"
    assert diagnostics(source) == [("warning", 3, "unreachable code")]
    for stop in ['fail "x"', "return"]:
        assert diagnostics("main {\n" + stop + ";\n1\n}") == [("warning", 3, "unreachable code")]
    loop = "main { while true {\nbreak\n1\n}\nwhile true {\ncontinue\n2\n} }"
    assert diagnostics(loop) == [
        ("warning", 3, "unreachable code"),
        ("warning", 7, "unreachable code"),
    ]
    assert diagnostics("main { if true { return 1 } 2 }") == []


def test_behavior_without_clauses_is_a_warning() -> None:
    assert diagnostics("behavior Empty { field f = 0 }") == [
        ("warning", 1, "behavior Empty has no clauses: every call to it fails")
    ]


# ---------------------------------------------------------------- shape of the result


def test_diagnostics_are_sorted_and_keep_going() -> None:
    source = "fn g() { return y }\nmain {\nreturn x\nbreak\n}"
    assert diagnostics(source) == [
        ("error", 1, "undefined name 'y'"),
        ("error", 3, "undefined name 'x'"),
        ("warning", 4, "unreachable code"),
        ("error", 4, "break outside a loop"),
    ]
    assert all(d.severity in (Severity.ERROR, Severity.WARNING) for d in check(parse(source, "t")))


def test_each_diagnostic_has_the_span_of_its_node() -> None:
    (diagnostic,) = check(parse("main {\n  let a = [1, foo]\n}", "s.avm"))
    assert diagnostic.span == Span("s.avm", 2, 15, 2, 18)


def test_hand_built_deep_ast_is_reported_not_raised() -> None:
    value: ast.Expr = ast.Literal(1)
    for _ in range(5000):
        value = ast.Not(value)
    module = ast.Module([ast.MainDef(ast.Block([ast.Return(value)]))])
    assert [d.message for d in check(module)] == ["program nests too deeply"]
