"""Check 1: every .bicep file parses with pycep-parser, the parser checkov uses."""

from __future__ import annotations

from bicep import bicep_files
from common import REPO_ROOT
from conftest import Tree, messages
from run import parse_check


def test_every_bicep_file_parses() -> None:
    files = bicep_files(REPO_ROOT / "infra")
    assert len(files) >= 10, files
    assert parse_check(REPO_ROOT) == []


def test_a_syntax_error_fails(tree: Tree) -> None:
    # an unclosed object: checkov would skip this file and report nothing about it
    tree.edit("infra/modules/storage-account.bicep", "    publicAccess: 'None'\n  }\n", "    publicAccess: 'None'\n")
    findings = parse_check(tree.root)
    assert len(findings) == 1, messages(findings)
    assert findings[0].path == "infra/modules/storage-account.bicep"
    assert "does not parse" in findings[0].message


def test_syntax_pycep_does_not_know_fails(tree: Tree) -> None:
    # newer Bicep syntax that checkov's parser cannot read must not be used: checkov would go blind
    tree.edit(
        "infra/modules/identity.bicep",
        "param tags object = {}",
        "param tags object?",
    )
    findings = parse_check(tree.root)
    assert [f.path for f in findings] == ["infra/modules/identity.bicep"], messages(findings)


def test_an_unbalanced_multi_line_string_fails(tree: Tree) -> None:
    tree.edit("infra/modules/identity.bicep", "// User-assigned", "var text = '''\n// User-assigned")
    findings = parse_check(tree.root)
    assert "infra/modules/identity.bicep" in messages(findings)


def test_a_condition_pycep_misreads_fails(tree: Tree) -> None:
    # Bicep reads `a > 0 ? x : y` as `(a > 0) ? x : y`; pycep, and so checkov, as `a > (0 ? x : y)`
    tree.edit("infra/modules/storage-lifecycle.bicep", "(coldAfterDays > 0) ? {", "coldAfterDays > 0 ? {")
    findings = parse_check(tree.root)
    assert [f.path for f in findings] == ["infra/modules/storage-lifecycle.bicep"], messages(findings)
    assert "put the condition in parentheses" in findings[0].message


def test_a_property_access_pycep_misreads_fails(tree: Tree) -> None:
    # `a.b.?c ?? d` is grouped `a.(b.(c ?? d))` by pycep
    tree.edit(
        "infra/modules/storage-reference.bicep",
        "(account.properties.?isHnsEnabled) ?? false",
        "account.properties.?isHnsEnabled ?? false",
    )
    findings = parse_check(tree.root)
    assert "add parentheses" in messages(findings)
