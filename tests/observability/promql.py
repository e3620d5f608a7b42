"""Find the metric names a PromQL expression (or a Grafana query using template variables) selects.

Not a full PromQL parser: it removes what cannot hold a metric name (strings, comments, label
matchers, ranges and subqueries, offsets, label lists of by/without/on/ignoring/group_left/
group_right, Grafana variables) and then takes every identifier that is neither a function or
aggregation call (followed by an opening parenthesis) nor a keyword.
"""

from __future__ import annotations

import re

# Operators, modifiers and literals that look like identifiers (PromQL keywords are case-insensitive).
KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "inf",
        "nan",
        "atan2",
        # aggregations: may be followed by `by (...)` instead of their opening parenthesis
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)

_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$\w+")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_COMMENT = re.compile(r"#[^\n]*")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE)
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z.]+", re.IGNORECASE)
_AT = re.compile(r"@\s*[-+]?[0-9.]+")
_TOKEN = re.compile(
    r"(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)"
    r"|(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)"
)


def strip_non_names(expr: str) -> str:
    """The expression with everything removed that cannot be (or hide) a metric name."""
    text = _GRAFANA_VARIABLE.sub("0", expr)
    text = _STRING.sub('""', text)
    text = _COMMENT.sub(" ", text)
    text = _BRACES.sub(" ", text)
    # nested brackets do not occur in PromQL ranges, but a subquery of a range is [a:b]
    while _BRACKETS.search(text):
        text = _BRACKETS.sub(" ", text)
    text = _LABEL_LIST.sub(r" \1 ", text)
    text = _OFFSET.sub(" ", text)
    return _AT.sub(" ", text)


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression."""
    text = strip_non_names(expr)
    names: set[str] = set()
    for match in _TOKEN.finditer(text):
        name = match.group("ident")
        if name is None:
            continue
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if name.lower() in KEYWORDS:
            continue
        names.add(name)
    return names


_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((?P<args>.*)\)\s*$", re.DOTALL)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((?P<expr>.*)\)\s*$", re.DOTALL)


def grafana_variable_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus template variable query.

    `label_values(selector, label)` names the selector's metric (`label_values(label)` names none),
    `query_result(expr)` the expression's; anything else is taken as PromQL.
    """
    found = _LABEL_VALUES.match(query)
    if found:
        args = found.group("args")
        # the label is the last top-level argument; a selector holds commas only inside braces
        selector = _STRING.sub('""', args)
        selector = _BRACES.sub(" ", selector)
        if "," not in selector:
            return set()
        return metric_names(selector.rsplit(",", 1)[0])
    found = _QUERY_RESULT.match(query)
    if found:
        return metric_names(found.group("expr"))
    return metric_names(query)
