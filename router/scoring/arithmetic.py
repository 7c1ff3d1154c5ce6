"""Check the worked arithmetic in an answer ("16 - 3 = 13", GSM8K's "<<9*2=18>>") without eval."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_NUMBER = r"\d+(?:,\d{3})*(?:\.\d+)?"
_OPERAND = rf"(?:\(\s*)*-?[$€£]?{_NUMBER}%?(?:\s*\))*"
_OPERATOR = r"(?:\s*[-+*/×÷^]\s*|\s+[xX]\s+)"
_EXPR = rf"{_OPERAND}(?:{_OPERATOR}{_OPERAND})*"
_LEFT = re.compile(rf"(?<![\w.])({_EXPR})\s*$")
_RIGHT = re.compile(rf"\s*({_EXPR})(?![\w.,]*\d)(?!\s+\d+/\d)")
_LEADING = re.compile(rf"\s*-?[$€£]?{_NUMBER}")
_OPERATOR_BEFORE = re.compile(r"(?:[-+*/×÷^]|\s[xX])\s*$")
_ANNOTATION = re.compile(r"<<([^<>=]+)=([^<>=]+)>>")
_PERCENT = re.compile(rf"({_NUMBER})%")
_DECIMALS = re.compile(r"^-?\d+(?:\.(\d+))?$")
_WINDOW = 200
"""How far from an "=" its two sides are looked for (keeps the work linear in the answer's length)."""
_MAX_POWER = 64.0
_MAX_MAGNITUDE = 1e15


@dataclass(frozen=True)
class ArithmeticCheck:
    """How many equations an answer states, and the ones that are wrong."""

    checked: int
    wrong: tuple[str, ...]


def _normalise(expr: str) -> str:
    """An expression in Python syntax: currency and digit commas dropped, percent as a fraction."""
    expr = re.sub(r"[$€£]", "", expr).replace(",", "")
    expr = _PERCENT.sub(lambda m: repr(float(m.group(1)) / 100), expr)
    expr = re.sub(r"\s+[xX]\s+", " * ", expr)
    return expr.replace("×", "*").replace("÷", "/").replace("^", "**").strip()


def _value(node: ast.AST) -> float | None:
    """The value of a parsed arithmetic expression; None for anything but numbers and + - * / **."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _value(node.operand)
        return None if inner is None else (-inner if isinstance(node.op, ast.USub) else inner)
    if not isinstance(node, ast.BinOp):
        return None
    left, right = _value(node.left), _value(node.right)
    if left is None or right is None:
        return None
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    if isinstance(node.op, ast.Div):
        return None if right == 0 else left / right
    if isinstance(node.op, ast.Pow) and abs(right) <= _MAX_POWER and abs(left) <= _MAX_MAGNITUDE:
        try:
            result = left**right
        except (OverflowError, ZeroDivisionError):
            return None
        return result if isinstance(result, float) else None
    return None


def evaluate(expr: str) -> tuple[float, bool] | None:
    """The value of an arithmetic expression and whether it has an operator; None when it does not parse."""
    try:
        tree = ast.parse(_normalise(expr), mode="eval")
    except (SyntaxError, ValueError):
        return None
    value = _value(tree.body)
    if value is None or abs(value) > _MAX_MAGNITUDE:
        return None
    return value, any(isinstance(n, ast.BinOp) for n in ast.walk(tree))


def _tolerance(expr: str) -> float:
    """How far a stated result may be from the true one: half a unit of its last written decimal."""
    match = _DECIMALS.match(_normalise(expr))
    if match is None:
        return 1e-6
    decimals = len(match.group(1) or "")
    return 0.5 * 10.0**-decimals + 1e-9


def _holds(left: str, right: str) -> bool | None:
    """Whether ``left = right`` holds; None when it is not a checkable calculation."""
    lhs, rhs = evaluate(left), evaluate(right)
    if lhs is None or rhs is None or not (lhs[1] or rhs[1]):
        return None
    tolerance = max(_tolerance(right), _tolerance(left), 1e-6 * max(1.0, abs(rhs[0])))
    readings = [rhs[0]]
    if "%" in right and "%" not in left:
        readings.append(rhs[0] * 100)  # "30/100 * 100 = 30%"
    lead = _LEADING.match(right)
    if rhs[1] and lead is not None and (first := evaluate(lead.group(0))) is not None:
        readings.append(first[0])  # a running calculation: "45 - 5 = 40 / 2 = 20"
    return any(abs(lhs[0] - reading) <= tolerance for reading in readings)


def _key(left: str, right: str) -> str:
    """An equation without spacing and currency, to count one written twice (text and annotation) once."""
    return re.sub(r"[\s$€£,]", "", f"{left}={right}")


def _left_side(segment: str) -> str | None:
    """The expression that ends a segment (just before an "="); None when there is none or it is cut short."""
    tail = segment[-_WINDOW:]
    match = _LEFT.search(tail)
    if match is None or (match.start(1) == 0 and len(segment) > _WINDOW):
        return None
    if _OPERATOR_BEFORE.search(tail[: match.start(1)]):
        return None  # the tail of a longer expression: "8 units * 3/4 = ..."
    return match.group(1)


def _right_side(segment: str) -> str | None:
    """The expression that starts a segment (just after an "="); None when there is none or it is cut short."""
    head = segment[:_WINDOW]
    match = _RIGHT.match(head)
    if match is None or (match.end(1) == len(head) and len(segment) > _WINDOW):
        return None
    return match.group(1)


def _equations(text: str) -> dict[str, tuple[str, str]]:
    """The distinct ``left = right`` pairs an answer writes, from annotations and around each "=" of its text."""
    text = text.replace("\\*", "*")
    pairs = [(m.group(1), m.group(2)) for m in _ANNOTATION.finditer(text)]
    segments = _ANNOTATION.sub("", text).split("=")
    for before, after in zip(segments, segments[1:], strict=False):
        left, right = _left_side(before), _right_side(after)
        if left is not None and right is not None:
            pairs.append((left, right))
    return {_key(left, right): (left, right) for left, right in pairs}


def check_arithmetic(text: str) -> ArithmeticCheck:
    """Check every calculation an answer writes out, in chains like ``a + b = c = d`` and ``<<a*b=c>>``."""
    checked = 0
    wrong: list[str] = []
    for left, right in _equations(text).values():
        holds = _holds(left, right)
        if holds is None:
            continue
        checked += 1
        if not holds:
            wrong.append(f"{left.strip()} = {right.strip()}")
    return ArithmeticCheck(checked=checked, wrong=tuple(wrong))
