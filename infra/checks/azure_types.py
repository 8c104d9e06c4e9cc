"""Offline type check of Bicep files against the Azure resource type data in ``infra/types``.

It does, for the values written in the files, what the Bicep compiler does with the same data:

* every resource type and API version must have type data (or be one of the few the checker knows);
* every property name must exist on its object type (no misspelling, right case), and none may be
  read-only;
* required properties of an object written out in full must be present;
* literal values must have the right kind (string, integer, boolean, object, array) and, where the
  type lists the allowed values (closed unions), be one of them; string length, pattern and integer
  bounds are checked; parameters with ``@allowed`` lists are checked value by value wherever they are
  used, and variables are followed to their values;
* modules: the file exists, its ``targetScope`` matches where it is deployed, every argument is a
  declared parameter of the right kind (and within its ``@allowed`` list), every required parameter is
  given, and ``module.outputs.x`` names a declared output;
* every identifier refers to a declared parameter, variable, resource, module or loop variable;
* resources are deployed at a scope their type allows.

Expressions whose value is only known at deployment (function results, property reads) are checked
for their kind where it is evident and otherwise accepted, as the compiler does for ``any``.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bicep import (
    Access,
    Arr,
    BicepFile,
    Bool,
    Call,
    Cond,
    For,
    Int,
    Interp,
    Module,
    Node,
    Null,
    Obj,
    Other,
    Param,
    Ref,
    Resource,
    Str,
    children,
)
from common import TYPES_DIR, Finding, relative

REQUIRED, READ_ONLY, WRITE_ONLY = 1, 2, 4
SCOPE_BITS = {"tenant": 1, "managementGroup": 2, "subscription": 4, "resourceGroup": 8}
EXTENSION = 16

#: resource types without a file in infra/types, with what the checker knows of them.
KNOWN_WITHOUT_TYPE_DATA: dict[str, dict[str, Any]] = {
    # Microsoft.Resources is not published in bicep-types-az: a resource group has three writable
    # properties and is created at subscription scope.
    "microsoft.resources/resourcegroups": {
        "properties": {"name", "location", "tags", "managedBy"},
        "required": {"name", "location"},
        "scopes": SCOPE_BITS["subscription"],
    },
}

RESOURCE_KEYWORDS = {"parent", "scope", "dependsOn"}
MODULE_KEYS = {"name", "params", "scope", "dependsOn"}
EXISTING_KEYS = {"name", "scope", "parent"}

# the kind of value a function returns, where it is evident (pycep rule names)
_STRING_FUNCTIONS = {
    "string_func", "guid", "unique_string", "format", "to_lower", "to_upper", "replace", "substring",
    "trim", "uri", "uri_component", "uri_component_to_string", "base64_func", "base64_to_string",
    "data_uri", "data_uri_to_string", "pad_left", "join", "new_guid", "utc_now", "date_time_add",
    "resource_id", "subscription_resource_id", "tenant_resource_id", "extension_resource_id",
    "management_group_resource_id", "load_text_content", "load_file_as_base64",
}  # fmt: skip
_INT_FUNCTIONS = {"int_func", "length", "index_of", "last_index_of", "date_time_to_epoch"}
_BOOL_FUNCTIONS = {"bool_func", "contains", "empty", "starts_with", "ends_with"}
_BOOL_OPERATORS = {
    "equals", "not_equals", "equals_case_insens", "not_equals_case_insens", "greater_than",
    "greater_than_or_equals", "less_than", "less_than_or_equals", "and_op", "or_op", "not_op",
}  # fmt: skip
_INT_OPERATORS = {"add", "substract", "multiply", "divide", "modulo", "minus"}

_TYPE_NAMES = {
    "StringType": "string",
    "StringLiteralType": "string",
    "IntegerType": "int",
    "BooleanType": "bool",
    "ObjectType": "object",
    "DiscriminatedObjectType": "object",
    "ArrayType": "array",
}


# ---- the type data -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TypeRef:
    """One type record: the file's list of records and the index of this one."""

    records: tuple[dict[str, Any], ...]
    index: int
    source: str  # provider/api-version folder, for the unused-file report

    @property
    def data(self) -> dict[str, Any]:
        return self.records[self.index]

    @property
    def kind(self) -> str:
        return str(self.data["$type"])

    def follow(self, ref: dict[str, str]) -> TypeRef:
        return TypeRef(self.records, int(ref["$ref"].rsplit("/", 1)[1]), self.source)

    def describe(self) -> str:
        data = self.data
        if self.kind == "StringLiteralType":
            return repr(data["value"])
        if self.kind == "UnionType":
            return " | ".join(self.follow(e).describe() for e in data["elements"])
        if self.kind == "ObjectType":
            return f"object {data.get('name', '')}".strip()
        if self.kind == "ArrayType":
            return f"array of {self.follow(data['itemType']).describe()}"
        return _TYPE_NAMES.get(self.kind, self.kind)


class TypeLibrary:
    """Every ``types.json`` below ``types_dir``, indexed by ``Provider/type@api-version``."""

    def __init__(self, types_dir: Path = TYPES_DIR) -> None:
        self.types_dir = types_dir
        self.resources: dict[str, TypeRef] = {}
        self.sources: set[str] = set()
        for path in sorted(types_dir.glob("*/*/types.json")):
            source = path.parent.relative_to(types_dir).as_posix()
            self.sources.add(source)
            records = tuple(json.loads(path.read_text(encoding="utf-8")))
            for index, record in enumerate(records):
                if record.get("$type") == "ResourceType":
                    self.resources[record["name"].lower()] = TypeRef(records, index, source)

    def resource(self, resource_type: str, api_version: str) -> TypeRef | None:
        return self.resources.get(f"{resource_type}@{api_version}".lower())

    def versions_of(self, resource_type: str) -> list[str]:
        prefix = resource_type.lower() + "@"
        return sorted(k.split("@", 1)[1] for k in self.resources if k.startswith(prefix))


@functools.cache
def default_library() -> TypeLibrary:
    return TypeLibrary()


# ---- the checker ---------------------------------------------------------------------------------


class _Context:
    """Where a value sits, for messages, and the file it belongs to."""

    def __init__(self, file: BicepFile, root: Path) -> None:
        self.file = file
        self.root = root
        self.findings: list[Finding] = []
        self.rel = relative(file.path, root)

    def report(self, line: int, message: str) -> None:
        self.findings.append(Finding(self.rel, line, message))


def check_types(files: Iterable[BicepFile], root: Path, library: TypeLibrary | None = None) -> list[Finding]:
    """Type-check ``files`` (all the deployment's Bicep files, already parsed)."""
    library = library or default_library()
    by_path = {f.path.resolve(): f for f in files}
    findings: list[Finding] = []
    used: set[str] = set()
    for file in by_path.values():
        checker = _FileChecker(_Context(file, root), library, by_path, used)
        checker.run()
        findings.extend(checker.ctx.findings)
    types_rel = relative(library.types_dir, root)
    for source in sorted(library.sources - used):
        findings.append(Finding(f"{types_rel}/{source}/types.json", 0, "type data no Bicep file uses: delete it"))
    return sorted(set(findings))


class _FileChecker:
    def __init__(self, ctx: _Context, library: TypeLibrary, files: dict[Path, BicepFile], used: set[str]) -> None:
        self.ctx = ctx
        self.file = ctx.file
        self.library = library
        self.files = files
        self.used = used

    def run(self) -> None:
        self.check_scope_value()
        for param in self.file.params.values():
            self.check_param(param)
        for resource in self.file.resources.values():
            self.check_resource(resource)
        for module in self.file.modules.values():
            self.check_module(module)
        for output in self.file.outputs.values():
            self.check_declared(output.value, output.type, f"output {output.name}")
        self.check_symbols()

    def check_scope_value(self) -> None:
        if self.file.target_scope not in SCOPE_BITS:
            self.ctx.report(1, f"targetScope '{self.file.target_scope}' is not one of {', '.join(SCOPE_BITS)}")

    # -- parameters and declared types --

    def check_param(self, param: Param) -> None:
        where = f"parameter {param.name}"
        if param.type not in ("string", "int", "bool", "object", "array"):
            self.ctx.report(param.line, f"{where}: unknown type '{param.type}'")
            return
        allowed = param.allowed
        if allowed is not None:
            for value in allowed:
                self.check_declared(value, param.type, f"{where} @allowed value")
        if param.default is not None:
            self.check_declared(param.default, param.type, f"{where} default")
            if allowed is not None and _literal(param.default) is not None:
                values = [_literal(v) for v in allowed]
                if _literal(param.default) not in values:
                    self.ctx.report(
                        param.default.line,
                        f"{where}: default {param.default.text} is not in its @allowed list",
                    )
            self.check_bounds(param, param.default, where)

    def check_bounds(self, param: Param, value: Node, where: str) -> None:
        """@minValue/@maxValue/@minLength/@maxLength of ``param`` against a literal ``value``."""
        for decorator in param.decorators:
            bound = decorator.argument
            if not isinstance(bound, int):
                continue
            if isinstance(value, Int):
                if decorator.name == "min_val" and value.value < bound:
                    self.ctx.report(value.line, f"{where}: {value.value} is below @minValue({bound})")
                if decorator.name == "max_val" and value.value > bound:
                    self.ctx.report(value.line, f"{where}: {value.value} is above @maxValue({bound})")
            if isinstance(value, Str):
                if decorator.name == "min_len" and len(value.value) < bound and value.value != "":
                    self.ctx.report(value.line, f"{where}: '{value.value}' is shorter than @minLength({bound})")
                if decorator.name == "max_len" and len(value.value) > bound:
                    self.ctx.report(value.line, f"{where}: '{value.value}' is longer than @maxLength({bound})")

    def check_declared(self, node: Node, declared: str, where: str) -> None:
        """A value against a declared parameter/output type (string, int, bool, object, array)."""
        for branch in self.branches(node):
            kind = self.kind(branch)
            if kind not in ("any", "null") and declared != "any" and kind != declared:
                self.ctx.report(branch.line, f"{where}: expected {declared}, got {kind} {_show(branch)}")

    # -- resources --

    def check_resource(self, resource: Resource) -> None:
        where = f"resource {resource.symbol} ({resource.type}@{resource.api_version})"
        obj = resource.obj
        if obj is None:
            self.ctx.report(resource.line, f"{where}: the body must be an object")
            return
        known = KNOWN_WITHOUT_TYPE_DATA.get(resource.type.lower())
        rtype = self.library.resource(resource.type, resource.api_version)
        if rtype is None and known is None:
            versions = self.library.versions_of(resource.type)
            hint = (
                f"type data exists for API version(s) {', '.join(versions)}"
                if versions
                else "no type data for this resource type in infra/types (copy it from bicep-types-az)"
            )
            self.ctx.report(resource.line, f"{where}: unknown resource type or API version; {hint}")
            return
        if rtype is not None:
            self.used.add(rtype.source)
        if resource.existing:
            for prop in obj.props:
                if prop.key not in EXISTING_KEYS:
                    self.ctx.report(prop.line, f"{where}: an existing resource cannot set '{prop.key}'")
            return
        self.check_resource_scope(resource, obj, where, known, rtype)
        if known is not None:
            for prop in obj.props:
                if prop.key not in known["properties"] | RESOURCE_KEYWORDS:
                    self.ctx.report(prop.line, f"{where}: unknown property '{prop.key}'")
            for key in sorted(known["required"] - set(obj.keys())):
                self.ctx.report(resource.line, f"{where}: missing required property '{key}'")
            return
        assert rtype is not None
        body = rtype.follow(rtype.data["body"])
        self.check_object(obj, body, where, extra_keys=RESOURCE_KEYWORDS)

    def check_resource_scope(
        self,
        resource: Resource,
        obj: Obj,
        where: str,
        known: dict[str, Any] | None,
        rtype: TypeRef | None,
    ) -> None:
        writable = known["scopes"] if known else int(rtype.data.get("writableScopes", 31)) if rtype else 31
        if obj.get("scope") is not None:
            if not writable & EXTENSION:
                self.ctx.report(obj.get("scope").line, f"{where}: not an extension resource, cannot take 'scope'")  # type: ignore[union-attr]
            return
        if obj.get("parent") is not None or resource.nested_in is not None:
            return
        bit = SCOPE_BITS.get(self.file.target_scope, 8)
        if not writable & bit:
            self.ctx.report(resource.line, f"{where}: cannot be deployed at {self.file.target_scope} scope")

    # -- values against the type data --

    def check_object(
        self, obj: Obj, otype: TypeRef, where: str, path: str = "", extra_keys: Iterable[str] = ()
    ) -> None:
        if otype.kind == "DiscriminatedObjectType":
            self.check_discriminated(obj, otype, where, path)
            return
        self.check_props(obj, otype, dict(otype.data.get("properties", {})), where, path, extra_keys)

    def check_props(
        self,
        obj: Obj,
        otype: TypeRef,
        properties: dict[str, Any],
        where: str,
        path: str,
        extra_keys: Iterable[str] = (),
    ) -> None:
        additional = otype.data.get("additionalProperties")
        extra = set(extra_keys)
        at = f" in {path}" if path else ""
        for prop in obj.props:
            child = f"{path}.{prop.key}" if path else prop.key
            if not prop.key_is_literal:
                if additional is not None:
                    self.check_value(prop.value, otype.follow(additional), where, child)
                continue
            if prop.key in extra:
                continue
            spec = properties.get(prop.key)
            if spec is None:
                if additional is not None:
                    self.check_value(prop.value, otype.follow(additional), where, child)
                    continue
                writable = sorted(k for k, v in properties.items() if not v.get("flags", 0) & READ_ONLY)
                case = [k for k in writable if k.lower() == prop.key.lower()]
                close = case or difflib.get_close_matches(prop.key, writable, n=1, cutoff=0.6)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.ctx.report(prop.line, f"{where}: unknown property '{prop.key}'{at}{hint}")
                continue
            flags = int(spec.get("flags", 0))
            if flags & READ_ONLY and not flags & WRITE_ONLY:
                self.ctx.report(prop.line, f"{where}: property '{child}' is read-only")
                continue
            self.check_value(prop.value, otype.follow(spec["type"]), where, child)
        if all(p.key_is_literal for p in obj.props):
            present = set(obj.keys())
            for key, spec in properties.items():
                flags = int(spec.get("flags", 0))
                if flags & REQUIRED and not flags & READ_ONLY and key not in present:
                    self.ctx.report(obj.line, f"{where}: missing required property '{key}'{at}")

    def check_discriminated(self, obj: Obj, otype: TypeRef, where: str, path: str) -> None:
        data = otype.data
        key = data["discriminator"]
        value = obj.get(key)
        literal = _literal(self.file.resolve(value)) if value is not None else None
        if value is None or not isinstance(literal, str):
            return  # which variant applies is only known at deployment
        elements: dict[str, Any] = data["elements"]
        if literal not in elements:
            allowed = ", ".join(sorted(elements))
            self.ctx.report(value.line, f"{where}: {path}.{key} '{literal}' is not one of {allowed}")
            return
        variant = otype.follow(elements[literal])
        properties = {**data.get("baseProperties", {}), **variant.data.get("properties", {})}
        self.check_props(obj, variant, properties, where, path)

    def check_value(self, node: Node, ttype: TypeRef, where: str, path: str) -> None:
        for branch in self.branches(node):
            problem = self.mismatch(branch, ttype, where, path)
            if problem:
                self.ctx.report(branch.line, problem)

    def branches(self, node: Node, seen: frozenset[str] = frozenset()) -> Iterator[Node]:
        """The values ``node`` may take: both sides of a ``?:``, variables followed, and each
        ``@allowed`` value of a parameter."""
        if isinstance(node, Cond):
            yield from self.branches(node.then, seen)
            yield from self.branches(node.other, seen)
        elif isinstance(node, Ref) and node.name in self.file.variables and node.name not in seen:
            yield from self.branches(self.file.variables[node.name].value, seen | {node.name})
        elif isinstance(node, Ref) and node.name in self.file.params and self.file.params[node.name].allowed:
            yield from self.file.params[node.name].allowed or ()
        else:
            yield node

    def mismatch(self, node: Node, ttype: TypeRef, where: str, path: str) -> str | None:
        """Why ``node`` cannot have type ``ttype`` (None if it can, or if that is unknown offline)."""
        kind = ttype.kind
        data = ttype.data
        label = f"{where}: {path}"
        if kind == "AnyType" or isinstance(node, Null):
            return None
        if kind == "UnionType":
            elements = [ttype.follow(e) for e in data["elements"]]
            problems = [self.mismatch(node, e, where, path) for e in elements]
            if any(p is None for p in problems):
                return None
            literal = _literal(node)
            if literal is not None and all(e.kind == "StringLiteralType" for e in elements):
                allowed = ", ".join(repr(e.data["value"]) for e in elements)
                return f"{label}: {_show(node)} is not an allowed value (allowed: {allowed})"
            return next(p for p in problems if p)
        if isinstance(node, Obj):
            if kind in ("ObjectType", "DiscriminatedObjectType"):
                self.check_object(node, ttype, where, path)
                return None
            return f"{label}: expected {ttype.describe()}, got an object"
        if isinstance(node, Arr | For):
            if kind != "ArrayType":
                return f"{label}: expected {ttype.describe()}, got an array"
            item = ttype.follow(data["itemType"])
            if isinstance(node, For):
                self.check_value(node.body, item, where, f"{path}[]")
                return None
            for index, value in enumerate(node.items):
                self.check_value(value, item, where, f"{path}[{index}]")
            if "maxLength" in data and len(node.items) > data["maxLength"]:
                return f"{label}: at most {data['maxLength']} items"
            return None
        if isinstance(node, Str):
            return self.string_mismatch(node, ttype, label)
        if isinstance(node, Int):
            if kind != "IntegerType":
                return f"{label}: expected {ttype.describe()}, got integer {node.value}"
            if "minValue" in data and node.value < data["minValue"]:
                return f"{label}: {node.value} is below the minimum {data['minValue']}"
            if "maxValue" in data and node.value > data["maxValue"]:
                return f"{label}: {node.value} is above the maximum {data['maxValue']}"
            return None
        if isinstance(node, Bool):
            if kind != "BooleanType":
                return f"{label}: expected {ttype.describe()}, got boolean {node.text}"
            return None
        expr_kind = self.kind(node)
        expected = _TYPE_NAMES.get(kind)
        if expr_kind != "any" and expected is not None and expected != expr_kind:
            return f"{label}: expected {ttype.describe()}, got {expr_kind} {_show(node)}"
        return None

    def string_mismatch(self, node: Str, ttype: TypeRef, label: str) -> str | None:
        kind, data, value = ttype.kind, ttype.data, node.value
        if kind == "StringLiteralType":
            return None if value == data["value"] else f"{label}: '{value}' is not {data['value']!r}"
        if kind != "StringType":
            return f"{label}: expected {ttype.describe()}, got string '{value}'"
        if "minLength" in data and len(value) < data["minLength"]:
            return f"{label}: '{value}' is shorter than {data['minLength']} characters"
        if "maxLength" in data and len(value) > data["maxLength"]:
            return f"{label}: '{value}' is longer than {data['maxLength']} characters"
        pattern = data.get("pattern")
        if pattern:
            try:
                compiled = re.compile(pattern)
            except re.error:
                return None
            if not compiled.search(value):
                return f"{label}: '{value}' does not match the pattern {pattern}"
        return None

    def kind(self, node: Node, depth: int = 0) -> str:
        """The evident kind of an expression's value: string, int, bool, object, array, null or any."""
        if isinstance(node, Str | Interp):
            return "string"
        if isinstance(node, Int):
            return "int"
        if isinstance(node, Bool):
            return "bool"
        if isinstance(node, Null):
            return "null"
        if isinstance(node, Obj):
            return "object"
        if isinstance(node, Arr | For):
            return "array"
        if isinstance(node, Ref):
            if node.name in self.file.params:
                return self.file.params[node.name].type
            if node.name in self.file.variables and depth < 16:
                return self.kind(self.file.variables[node.name].value, depth + 1)
            if node.name in self.file.resources or node.name in self.file.modules:
                return "object"
            return "any"
        if isinstance(node, Call) and node.target is None:
            if node.name in _STRING_FUNCTIONS:
                return "string"
            if node.name in _INT_FUNCTIONS:
                return "int"
            if node.name in _BOOL_FUNCTIONS:
                return "bool"
            return "any"
        if isinstance(node, Cond):
            kinds = {self.kind(node.then, depth + 1), self.kind(node.other, depth + 1)} - {"null"}
            return kinds.pop() if len(kinds) == 1 else "any"
        if isinstance(node, Other):
            if node.kind in _BOOL_OPERATORS:
                return "bool"
            if node.kind in _INT_OPERATORS:
                return "int"
        return "any"

    # -- modules --

    def check_module(self, module: Module) -> None:
        where = f"module {module.symbol} ('{module.path}')"
        obj = module.obj
        if obj is None:
            self.ctx.report(module.line, f"{where}: the body must be an object")
            return
        for prop in obj.props:
            if prop.key not in MODULE_KEYS:
                self.ctx.report(prop.line, f"{where}: unknown module property '{prop.key}'")
        if module.path.startswith(("br:", "br/", "ts:", "ts/")):
            self.ctx.report(module.line, f"{where}: registry modules cannot be checked offline")
            return
        target = self.module_file(module)
        if target is None:
            self.ctx.report(module.line, f"{where}: no such file")
            return
        deployed_at = self.module_scope(obj)
        if deployed_at is not None and deployed_at != target.target_scope:
            self.ctx.report(
                module.line,
                f"{where}: deployed at {deployed_at} scope but the file's targetScope is {target.target_scope}",
            )
        params = obj.get("params")
        given: dict[str, Node] = {}
        if isinstance(params, Obj):
            for prop in params.props:
                given[prop.key] = prop.value
                declared = target.params.get(prop.key)
                if declared is None:
                    close = difflib.get_close_matches(prop.key, list(target.params), n=1)
                    hint = f"; did you mean '{close[0]}'?" if close else ""
                    self.ctx.report(prop.line, f"{where}: '{prop.key}' is not a parameter of the module{hint}")
                    continue
                self.check_argument(prop.value, declared, f"{where} parameter {prop.key}")
        elif params is not None and self.kind(params) not in ("object", "any"):
            self.ctx.report(params.line, f"{where}: params must be an object")
        if isinstance(params, Obj) or params is None:
            for name, declared in target.params.items():
                if declared.default is None and name not in given:
                    self.ctx.report(module.line, f"{where}: missing required parameter '{name}'")

    def check_argument(self, value: Node, declared: Param, where: str) -> None:
        self.check_declared(value, declared.type, where)
        allowed = declared.allowed
        for branch in self.branches(value):
            literal = _literal(branch)
            if literal is None:
                continue
            if allowed is not None and literal not in [_literal(a) for a in allowed]:
                self.ctx.report(branch.line, f"{where}: {branch.text} is not in the module's @allowed list")
            self.check_bounds(declared, branch, where)

    def module_file(self, module: Module) -> BicepFile | None:
        path = (self.file.path.parent / module.path).resolve()
        return self.files.get(path)

    def module_scope(self, obj: Obj) -> str | None:
        scope = obj.get("scope")
        if scope is None:
            return self.file.target_scope
        if isinstance(scope, Ref) and scope.name in self.file.resources:
            if self.file.resources[scope.name].type.lower() == "microsoft.resources/resourcegroups":
                return "resourceGroup"
            return None
        if isinstance(scope, Call):
            return {
                "resource_group": "resourceGroup",
                "subscription": "subscription",
                "tenant": "tenant",
                "management_group": "managementGroup",
            }.get(scope.name)
        return None

    # -- identifiers --

    def check_symbols(self) -> None:
        declared = self.file.symbols()
        roots: list[Node] = []
        for param in self.file.params.values():
            if param.default is not None:
                roots.append(param.default)
        roots += [v.value for v in self.file.variables.values()]
        roots += [r.body for r in self.file.resources.values()]
        roots += [r.condition for r in self.file.resources.values() if r.condition is not None]
        roots += [m.body for m in self.file.modules.values()]
        roots += [m.condition for m in self.file.modules.values() if m.condition is not None]
        roots += [o.value for o in self.file.outputs.values()]
        for root in roots:
            self.check_refs(root, declared, frozenset())

    def check_refs(self, node: Node, declared: set[str], bound: frozenset[str]) -> None:
        if isinstance(node, Ref):
            if node.name not in declared and node.name not in bound:
                close = difflib.get_close_matches(node.name, sorted(declared | bound), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.ctx.report(node.line, f"'{node.name}' is not declared{hint}")
            return
        if isinstance(node, For):
            for source in node.source:
                self.check_refs(source, declared, bound)
            inner = bound | set(node.variables)
            if node.condition is not None:
                self.check_refs(node.condition, declared, inner)
            self.check_refs(node.body, declared, inner)
            return
        if isinstance(node, Access) and isinstance(node.base, Ref) and node.base.name in self.file.modules:
            self.check_module_output(node)
        for child in children(node):
            self.check_refs(child, declared, bound)

    def check_module_output(self, node: Access) -> None:
        assert isinstance(node.base, Ref)
        module = self.file.modules[node.base.name]
        if len(node.members) < 2 or node.members[0] != "outputs":
            return
        target = self.module_file(module)
        if target is not None and node.members[1] not in target.outputs:
            close = difflib.get_close_matches(node.members[1], list(target.outputs), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            self.ctx.report(node.line, f"module {module.symbol} has no output '{node.members[1]}'{hint}")


def _literal(node: Node | None) -> str | int | bool | None:
    if isinstance(node, Str | Int | Bool):
        return node.value
    return None


def _show(node: Node) -> str:
    text = " ".join(node.text.split())
    return text if len(text) <= 60 else text[:57] + "..."
