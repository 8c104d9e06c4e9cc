"""Bicep files parsed with pycep-parser (the parser checkov uses) into a small typed syntax tree.

pycep's own JSON output cannot tell a literal ``'location'`` from a reference to the parameter
``location``, so this module walks pycep's Lark tree instead and keeps that distinction, the line of
every value and its source text. A file pycep cannot parse raises :class:`BicepSyntaxError`: checkov
silently skips such files, so the parse check must fail on its own.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lark import Token, Tree
from lark.exceptions import LarkError, UnexpectedInput
from pycep import BicepParser
from pycep.transformer import BicepToJson


class BicepSyntaxError(Exception):
    """The file is not Bicep that pycep (and therefore checkov) can read."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


# ---- expressions ---------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Node:
    line: int
    text: str


@dataclass(frozen=True, eq=False)
class Str(Node):
    """A string literal without interpolation."""

    value: str


@dataclass(frozen=True, eq=False)
class Interp(Node):
    """A string with ``${...}`` interpolation; ``raw`` is the text between the quotes and
    ``parts`` the interpolated expressions, parsed."""

    raw: str
    parts: tuple[Node, ...] = ()


@dataclass(frozen=True, eq=False)
class Int(Node):
    value: int


@dataclass(frozen=True, eq=False)
class Bool(Node):
    value: bool


@dataclass(frozen=True, eq=False)
class Null(Node):
    pass


@dataclass(frozen=True, eq=False)
class Ref(Node):
    """A bare identifier: a parameter, variable, resource, module or loop variable."""

    name: str


@dataclass(frozen=True, eq=False)
class Prop:
    key: str
    key_is_literal: bool
    value: Node
    line: int


@dataclass(frozen=True, eq=False)
class Obj(Node):
    props: tuple[Prop, ...]

    def get(self, key: str) -> Node | None:
        for prop in self.props:
            if prop.key_is_literal and prop.key == key:
                return prop.value
        return None

    def keys(self) -> list[str]:
        return [p.key for p in self.props if p.key_is_literal]


@dataclass(frozen=True, eq=False)
class Arr(Node):
    items: tuple[Node, ...]


@dataclass(frozen=True, eq=False)
class For(Node):
    """``[for x in source: body]`` (optionally filtered)."""

    variables: tuple[str, ...]
    source: tuple[Node, ...]
    condition: Node | None
    body: Node


@dataclass(frozen=True, eq=False)
class Cond(Node):
    test: Node
    then: Node
    other: Node


@dataclass(frozen=True, eq=False)
class Call(Node):
    """A function call; ``name`` is pycep's rule name (``guid``, ``unique_string``, ``json_func``...),
    or the method name for ``x.listKeys()`` (then ``target`` is ``x``)."""

    name: str
    args: tuple[Node, ...]
    target: Node | None = None


@dataclass(frozen=True, eq=False)
class Access(Node):
    """``base.m1.m2...``: property access with plain member names."""

    base: Node
    members: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Other(Node):
    """Any other operator (comparison, logic, arithmetic, indexing...)."""

    kind: str
    operands: tuple[Node, ...]


def children(node: Node) -> Iterator[Node]:
    """Direct sub-expressions of ``node``."""
    if isinstance(node, Obj):
        for prop in node.props:
            yield prop.value
    elif isinstance(node, Arr):
        yield from node.items
    elif isinstance(node, For):
        yield from node.source
        if node.condition is not None:
            yield node.condition
        yield node.body
    elif isinstance(node, Cond):
        yield from (node.test, node.then, node.other)
    elif isinstance(node, Call):
        if node.target is not None:
            yield node.target
        yield from node.args
    elif isinstance(node, Access):
        yield node.base
    elif isinstance(node, Other):
        yield from node.operands
    elif isinstance(node, Interp):
        yield from node.parts


def walk(node: Node) -> Iterator[Node]:
    """``node`` and every expression below it."""
    yield node
    for child in children(node):
        yield from walk(child)


# ---- declarations --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Decorator:
    name: str  # description, allowed, min_length, max_length, min_value, max_value, secure, ...
    argument: Node | str | int | None


@dataclass(frozen=True, eq=False)
class Param:
    name: str
    type: str
    default: Node | None
    decorators: tuple[Decorator, ...]
    line: int

    def decorator(self, name: str) -> Decorator | None:
        return next((d for d in self.decorators if d.name == name), None)

    @property
    def allowed(self) -> tuple[Node, ...] | None:
        found = self.decorator("allowed")
        if found is not None and isinstance(found.argument, Arr):
            return found.argument.items
        return None


@dataclass(frozen=True, eq=False)
class Var:
    name: str
    value: Node
    line: int


@dataclass(frozen=True, eq=False)
class Output:
    name: str
    type: str
    value: Node
    decorators: tuple[Decorator, ...]
    line: int


@dataclass(frozen=True, eq=False)
class Resource:
    symbol: str
    type: str
    api_version: str
    existing: bool
    condition: Node | None
    body: Node  # Obj, or For over an Obj
    line: int
    nested_in: str | None = None  # symbol of the enclosing resource for nested child resources

    @property
    def obj(self) -> Obj | None:
        body = self.body.body if isinstance(self.body, For) else self.body
        return body if isinstance(body, Obj) else None


@dataclass(frozen=True, eq=False)
class Module:
    symbol: str
    path: str
    condition: Node | None
    body: Node
    line: int

    @property
    def obj(self) -> Obj | None:
        body = self.body.body if isinstance(self.body, For) else self.body
        return body if isinstance(body, Obj) else None


@dataclass(eq=False)
class BicepFile:
    path: Path
    source: str
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    variables: dict[str, Var] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    pycep_json: object = None

    def symbols(self) -> set[str]:
        return set(self.params) | set(self.variables) | set(self.resources) | set(self.modules)

    def resources_of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type.lower() == resource_type.lower()]

    def resolve(self, node: Node, depth: int = 0) -> Node:
        """Follow references to variables (not parameters) to the expression they stand for."""
        while isinstance(node, Ref) and node.name in self.variables and depth < 32:
            node = self.variables[node.name].value
            depth += 1
        return node


# ---- parsing -------------------------------------------------------------------------------------


@functools.cache
def _parser() -> BicepParser:
    return BicepParser(add_line_numbers=False, cache=True)


def parse_file(path: Path) -> BicepFile:
    """Parse ``path`` exactly as checkov does (pycep: grammar and transformation), then build the tree.

    Results are remembered by content, so checking many copies of the same files (the planted-defect
    tests) parses each distinct file once."""
    source = path.read_text(encoding="utf-8")
    cached = _parsed.get(source)
    if isinstance(cached, BicepSyntaxError):
        raise BicepSyntaxError(path, cached.line, cached.message)
    if cached is None:
        try:
            cached = _parse_source(path, source)
        except BicepSyntaxError as error:
            _parsed[source] = error
            raise
        _parsed[source] = cached
    return dataclasses.replace(cached, path=path)


_parsed: dict[str, BicepFile | BicepSyntaxError] = {}


def _parse_source(path: Path, source: str) -> BicepFile:
    parser = _parser()
    if source.count("'''") % 2:
        raise BicepSyntaxError(path, None, "unbalanced ''' multi-line string")
    try:
        tree = parser.lark_parser.parse(source)
    except UnexpectedInput as error:
        expected = sorted(getattr(error, "expected", None) or getattr(error, "allowed", None) or [])[:8]
        hint = f" (expected one of: {', '.join(expected)})" if expected else ""
        raise BicepSyntaxError(path, error.line, f"syntax error at column {error.column}{hint}") from None
    except LarkError as error:
        raise BicepSyntaxError(path, None, f"syntax error: {error}") from None
    try:
        pycep_json = BicepToJson(add_line_numbers=True).transform(tree)
    except Exception as error:  # pycep turns a few grammatical but invalid constructs into exceptions
        raise BicepSyntaxError(path, None, f"pycep cannot transform the file: {error}") from None
    try:
        result = _Builder(path, source).file(tree)
    except _Unsupported as error:
        raise BicepSyntaxError(path, error.line, str(error)) from None
    result.pycep_json = pycep_json
    return result


class _Unsupported(Exception):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(message)


_ESCAPES = {"\\": "\\", "'": "'", "n": "\n", "r": "\r", "t": "\t", "$": "$"}


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), body)


def _tree(item: object) -> Tree[Token]:
    assert isinstance(item, Tree), item
    return item


def _optional_tree(item: object) -> Tree[Token] | None:
    return None if item is None else _tree(item)


class _Builder:
    def __init__(self, path: Path, source: str, line_offset: int = 0) -> None:
        self.path = path
        self.source = source
        self.line_offset = line_offset
        self._child_resources: list[tuple[str, Token, bool, Tree[Token]]] = []

    # -- helpers --

    def _line(self, item: Tree[Token] | Token) -> int:
        if isinstance(item, Token):
            return (item.line or 0) + self.line_offset
        return (getattr(item.meta, "line", 0) or 0) + self.line_offset

    def _text(self, item: Tree[Token] | Token) -> str:
        if isinstance(item, Token):
            return str(item)
        meta = item.meta
        if getattr(meta, "empty", True):
            return ""
        return self.source[meta.start_pos : meta.end_pos]

    # -- file --

    def file(self, tree: Tree[Token]) -> BicepFile:
        result = BicepFile(path=self.path, source=self.source)
        for element in tree.children:
            if not isinstance(element, Tree):
                continue
            kind = element.data
            if kind == "scope":
                result.target_scope = _unquote(str(element.children[0]))
            elif kind == "param":
                decorators, name, data_type, default = element.children
                result.params[str(name)] = Param(
                    name=str(name),
                    type=str(data_type.children[0]) if isinstance(data_type, Tree) else str(data_type),
                    default=self.expr(default) if default is not None else None,
                    decorators=self.decorators(_optional_tree(decorators)),
                    line=self._line(name),
                )
            elif kind == "var":
                _, name, value = element.children
                result.variables[str(name)] = Var(str(name), self.expr(value), self._line(name))
            elif kind == "output":
                decorators, name, data_type, value = element.children
                result.outputs[str(name)] = Output(
                    name=str(name),
                    type=str(data_type.children[0]) if isinstance(data_type, Tree) else str(data_type),
                    value=self.expr(value),
                    decorators=self.decorators(_optional_tree(decorators)),
                    line=self._line(name),
                )
            elif kind == "resource":
                _, name, type_api, existing, value = element.children
                self.resource(result, str(name), type_api, existing is not None, _tree(value), None)
            elif kind == "module":
                _, name, path_tree, value = element.children
                condition, body = self.conditional(_tree(value))
                result.modules[str(name)] = Module(
                    symbol=str(name),
                    path=_unquote(str(_tree(path_tree).children[0])),
                    condition=condition,
                    body=body,
                    line=self._line(name),
                )
            # metadata and user-defined types carry nothing the checks need
        return result

    def resource(
        self,
        result: BicepFile,
        name: str,
        type_api: Tree[Token] | Token,
        existing: bool,
        value: Tree[Token],
        parent: Resource | None,
    ) -> None:
        raw = _unquote(str(type_api.children[0] if isinstance(type_api, Tree) else type_api))
        line = self._line(type_api)
        if "@" in raw:
            resource_type, api_version = raw.split("@", 1)
            if parent is not None and "/" not in resource_type:
                resource_type = f"{parent.type}/{resource_type}"
        elif parent is not None:
            resource_type, api_version = f"{parent.type}/{raw}", parent.api_version
        else:
            raise _Unsupported(line, f"resource {name}: type '{raw}' has no API version")
        pending, self._child_resources = self._child_resources, []
        condition, body = self.conditional(value)
        nested, self._child_resources = self._child_resources, pending
        if name in result.resources:
            raise _Unsupported(line, f"resource symbol '{name}' is declared twice")
        resource = Resource(
            symbol=name,
            type=resource_type,
            api_version=api_version,
            existing=existing,
            condition=condition,
            body=body,
            line=line,
            nested_in=parent.symbol if parent else None,
        )
        result.resources[name] = resource
        for child_name, child_type, child_existing, child_body in nested:
            self.resource(result, child_name, child_type, child_existing, child_body, resource)

    def conditional(self, value: Tree[Token]) -> tuple[Node | None, Node]:
        if isinstance(value, Tree) and value.data == "deploy_condition":
            condition, body = value.children
            return self.expr(condition), self.expr(body)
        return None, self.expr(value)

    def decorators(self, tree: Tree[Token] | None) -> tuple[Decorator, ...]:
        if tree is None:
            return ()
        found: list[Decorator] = []
        for item in tree.children:
            if not isinstance(item, Tree):
                continue
            name = item.data.removeprefix("deco_")
            argument: Node | str | int | None = None
            if item.children:
                first = item.children[0]
                if isinstance(first, Tree):
                    argument = self.expr(first)
                elif isinstance(first, Token):
                    text = str(first)
                    if first.type in ("QUOTED_INTERPOLATION",):
                        argument = _unquote(text)
                    elif first.type == "MULTI_LINE_STRING":
                        argument = text[3:-3]
                    elif re.fullmatch(r"-?\d+", text):
                        argument = int(text)
                    else:
                        argument = text
            found.append(Decorator(name, argument))
        return tuple(found)

    # -- expressions --

    def expr(self, item: Tree[Token] | Token) -> Node:
        line, text = self._line(item), self._text(item)
        if isinstance(item, Token):
            if item.type == "INT":
                return Int(line, text, int(item))
            if item.type == "QUOTED_INTERPOLATION":
                return self.quoted(line, text)
            if item.type == "STRING":
                return Ref(line, text, text)
            return Other(line, text, f"token:{item.type}", ())
        kind = item.data
        kids = item.children
        if kind == "string":
            token = kids[0]
            if isinstance(token, Token) and token.type == "STRING":
                return Ref(line, text, str(token))
            return self.quoted(line, str(token))
        if kind == "multi_line_string":
            return Str(line, text, str(kids[0])[3:-3] if kids else "")
        if kind == "int":
            return Int(line, text, int(str(kids[0])))
        if kind in ("true", "false"):
            return Bool(line, text or kind, kind == "true")
        if kind == "null":
            return Null(line, text or "null")
        if kind == "object":
            props: list[Prop] = []
            for pair in kids:
                if not isinstance(pair, Tree):
                    continue
                if pair.data == "child_resource":
                    name, type_token, existing, body = pair.children
                    assert isinstance(type_token, Token)
                    self._child_resources.append((str(name), type_token, existing is not None, _tree(body)))
                    continue
                key_tree, value = pair.children[0], pair.children[1]
                key_token = key_tree.children[0] if isinstance(key_tree, Tree) else key_tree
                raw_key = str(key_token)
                if isinstance(key_token, Token) and key_token.type in ("QUOTED_INTERPOLATION", "QUOTED_STRING"):
                    key = _unquote(raw_key)
                    literal = "${" not in key
                else:
                    key, literal = raw_key, True
                props.append(Prop(key, literal, self.expr(value), self._line(key_token)))
            return Obj(line, text, tuple(props))
        if kind == "array":
            return Arr(line, text, tuple(self.expr(k) for k in kids if isinstance(k, Tree | Token)))
        if kind == "loop":
            spec, condition, body = _tree(kids[0]), kids[1], kids[2]
            variables = tuple(str(k) for k in spec.children if isinstance(k, Token) and k.type == "STRING")
            source = tuple(self.expr(k) for k in spec.children if isinstance(k, Tree))
            return For(
                line,
                text,
                variables,
                source,
                self.expr(condition) if condition is not None else None,
                self.expr(body),
            )
        if kind == "function":
            return self.function(kids[0])
        if kind == "operator":
            return self.operator(_tree(kids[0]))
        if kind in ("deploy_condition",):
            raise _Unsupported(line, "a deploy condition is only allowed on a resource or module")
        return Other(line, text, kind, tuple(self.expr(k) for k in kids if isinstance(k, Tree)))

    def quoted(self, line: int, token: str) -> Node:
        if re.search(r"(?<!\\)\$\{", token):
            return Interp(line, token, token[1:-1], tuple(self.interpolated(line, token[1:-1])))
        return Str(line, token, _unquote(token))

    def interpolated(self, line: int, raw: str) -> Iterator[Node]:
        """Parse each ``${expression}`` of an interpolated string with the same grammar."""
        index = 0
        while (start := raw.find("${", index)) != -1:
            if start > 0 and raw[start - 1] == "\\":
                index = start + 2
                continue
            depth, end = 0, start + 2
            while end < len(raw):
                char = raw[end]
                if char == "{":
                    depth += 1
                elif char == "}":
                    if depth == 0:
                        break
                    depth -= 1
                elif char == "'":  # skip a nested string literal
                    end = raw.find("'", end + 1)
                    if end == -1:
                        break
                end += 1
            expression = raw[start + 2 : end]
            try:
                tree = _parser().lark_parser.parse(f"var x = {expression}\n")
            except LarkError:
                raise _Unsupported(line, f"cannot parse the interpolation ${{{expression}}}") from None
            var = next(t for t in tree.children if isinstance(t, Tree) and t.data == "var")
            yield _Builder(self.path, f"var x = {expression}\n", line - 1).expr(var.children[2])
            index = end + 1

    def function(self, tree: Tree[Token] | Token) -> Node:
        if isinstance(tree, Token):
            return self.expr(tree)
        line, text = self._line(tree), self._text(tree)
        args: list[Node] = []
        members: list[str] = []
        for kid in tree.children:
            if kid is None:
                continue
            if isinstance(kid, Token):
                # a bare name token is the member of ``f().member``; other tokens are indexes
                if kid.type == "STRING":
                    members.append(str(kid))
                else:
                    args.append(Other(self._line(kid), str(kid), f"token:{kid.type}", ()))
            else:
                args.append(self.expr(kid))
        call: Node = Call(line, text, tree.data, tuple(args))
        if members:
            call = Access(line, text, call, tuple(members))
        return call

    def operator(self, tree: Tree[Token]) -> Node:
        line, text = self._line(tree), self._text(tree)
        kind = tree.data
        kids = [k for k in tree.children if k is not None]
        if kind == "conditional":
            test, then, other = (self.expr(k) for k in kids)
            return Cond(line, text, test, then, other)
        if kind == "property_accessor":
            return self.attach(self.expr(kids[0]), kids[1], tree)
        if kind == "function_accessor":
            target = self.expr(kids[0])
            name = str(kids[1])
            args = tuple(self.expr(k) for k in kids[2:] if isinstance(k, Tree | Token))
            return Call(line, text, name, args, target)
        for kid in kids:
            self.refuse_misgrouped(kid, tree)
        return Other(line, text, kind, tuple(self.expr(k) for k in kids if isinstance(k, Tree | Token)))

    def attach(self, base: Node, right: Tree[Token] | Token, whole: Tree[Token]) -> Node:
        """``base.right``: pycep nests ``a.b.c`` to the right (``a.(b.c)``, ``a.(b[0].c)``); rebuild
        it from the left, and refuse what pycep grouped differently from Bicep (``a.b ?? c``)."""
        line, text = self._line(whole), self._text(whole)
        if isinstance(right, Token) and right.type == "STRING":
            return self._access(base, (str(right),), line, text)
        if isinstance(right, Tree) and right.data == "string":
            token = right.children[0]
            if isinstance(token, Token) and token.type == "STRING":
                return self._access(base, (str(token),), line, text)
        if isinstance(right, Tree) and right.data == "operator" and isinstance(right.children[0], Tree):
            inner = right.children[0]
            parts = [k for k in inner.children if k is not None]
            if inner.data == "property_accessor":
                return self.attach(self.attach(base, parts[0], whole), parts[1], whole)
            if inner.data == "index_accessor":
                target = self.attach(base, parts[0], whole)
                return Other(line, text, "index_accessor", (target, self.expr(parts[1])))
            if inner.data == "function_accessor":
                target = self.attach(base, parts[0], whole)
                args = tuple(self.expr(k) for k in parts[2:] if isinstance(k, Tree | Token))
                return Call(line, text, str(parts[1]), args, target)
        raise _Unsupported(
            line,
            f"'{' '.join(text.split())}' is grouped as '{base.text}.({self._text(right)})' by pycep "
            "(and so by checkov): add parentheses, e.g. (a.b) ?? c",
        )

    @staticmethod
    def _access(base: Node, members: tuple[str, ...], line: int, text: str) -> Node:
        if isinstance(base, Access):
            return Access(line, text, base.base, base.members + members)
        return Access(line, text, base, members)

    def refuse_misgrouped(self, operand: Tree[Token] | Token, parent: Tree[Token]) -> None:
        """pycep reads ``a > 0 ? x : y`` as ``a > (0 ? x : y)`` (and ``!a ? x : y`` as ``!(a ? x : y)``),
        unlike Bicep; so does checkov. Such a condition must be parenthesized: ``(a > 0) ? x : y``."""
        if not (isinstance(operand, Tree) and operand.data == "operator"):
            return
        inner = operand.children[0]
        if not (isinstance(inner, Tree) and inner.data == "conditional"):
            return
        start = getattr(operand.meta, "start_pos", None)
        if start is not None and self.source[:start].rstrip().endswith("("):
            return  # written with parentheses: meant as it reads
        text = " ".join(self._text(parent).split())
        raise _Unsupported(
            self._line(parent),
            f"'{text}': pycep (and so checkov) groups the condition of '? :' differently from Bicep; "
            "put the condition in parentheses, e.g. (a > 0) ? x : y",
        )


def bicep_files(infra: Path) -> list[Path]:
    """Every ``.bicep`` file of the deployment (``infra/`` and below, not the checks' test data)."""
    return sorted(p for p in infra.rglob("*.bicep") if "checks" not in p.relative_to(infra).parts)
