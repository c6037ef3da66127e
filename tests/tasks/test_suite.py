"""Suite files: valid ones load with defaults applied; every kind of mistake is reported with its line."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from screenpilot.errors import SetupError
from screenpilot.tasks.suite import (
    AllCheck,
    AnswerCheck,
    FileCheck,
    LaunchStep,
    NotCheck,
    PushStep,
    ShellCheck,
    ShellStep,
    SleepStep,
    SuiteError,
    load_suite,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "suites"


def write(tmp_path: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SuiteError) as info:
        load_suite(write(tmp_path, text))
    return info.value.problems


def test_valid_suite_loads_with_defaults_and_hash(tmp_path: Path) -> None:
    (tmp_path / "note.txt").write_text("hi")
    path = write(
        tmp_path,
        """
        name: basics
        defaults: {env: android, max_steps: 7}
        tasks:
          - id: wifi-off
            goal: Turn Wi-Fi off
            app: com.android.settings
            setup:
              - shell: svc wifi enable
              - launch: com.android.settings
              - push: {local: note.txt, remote: /sdcard/note.txt}
              - sleep: 0.5
            success:
              all:
                - shell: settings get global wifi_on
                  equals: "0"
                - not: {file: /sdcard/gone.txt, exists: true}
            teardown:
              - shell: svc wifi enable
          - id: answer
            goal: How many?
            env: sandbox
            max_steps: 3
            success: {answer: {normalized: "42"}}
        """,
    )
    suite = load_suite(path)
    assert suite.name == "basics"
    assert suite.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    wifi, answer = suite.tasks
    assert (wifi.env, wifi.max_steps, answer.env, answer.max_steps) == ("android", 7, "sandbox", 3)
    assert [type(s) for s in wifi.setup] == [ShellStep, LaunchStep, PushStep, SleepStep]
    assert isinstance(wifi.success, AllCheck)
    shell, negated = wifi.success.all
    assert isinstance(shell, ShellCheck) and shell.equals == "0"
    assert isinstance(negated, NotCheck) and isinstance(negated.not_, FileCheck)
    assert isinstance(answer.success, AnswerCheck)
    assert suite.select(["answer"]).tasks == (answer,)
    with pytest.raises(SetupError, match="no task 'nope'"):
        suite.select(["nope"])


def test_unknown_key_and_missing_field_point_at_their_lines(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        tasks:
          - id: one
            env: android
            success:
              shell: echo 1
              equals: "1"
              colour: blue
          - id: two
            env: android
            success: {answer: {exact: x}}
        """,
    )
    suite_file = tmp_path / "suite.yaml"
    assert found == [
        f"{suite_file}:2: tasks[0] (id 'one').goal: missing required field 'goal'",
        f"{suite_file}:7: tasks[0] (id 'one').success.colour: unknown key 'colour'",
        f"{suite_file}:8: tasks[1] (id 'two').goal: missing required field 'goal'",
    ]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("success: {answer: {regex: '(open'}}", "bad regex '(open'"),
        ("success: {shell: x, regex: '[a-'}", "bad regex"),
        (
            "success: {frobnicate: 1}",
            "unknown kind; expected a mapping with one of: shell, file, screen_text",
        ),
        ("success: {any: [{answer: {exact: a}}, {bogus: 1}]}", "success.any[1]: unknown kind"),
        ("success: {file: /x, equals: a, contains: b}", "give only one of equals / contains / regex"),
        ("success: {answer: {}}", "give exactly one of exact / normalized / regex"),
        ("success: {screen_text: {}}", "give one of equals / contains / regex"),
        ("success: {python: 'not a path'}", "expected module:function"),
        ("setup: [{reboot: now}]\n    success: {answer: {exact: a}}", "one of: shell, launch, push, sleep"),
        ("max_steps: 0\n    success: {answer: {exact: a}}", "greater than or equal to 1"),
        ("success: {all: []}", "success.all: must not be empty"),
        ("success: {shell: x, file: y, equals: z}", "'file' is a second kind in one mapping"),
        ("success: {any: {answer: {exact: a}}}", "success.any: expected a list"),
        ("success: [1]", "unknown kind; expected a mapping with one of"),
    ],
)
def test_invalid_values_are_reported_with_line(tmp_path: Path, body: str, fragment: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("tasks:\n  - id: t\n    goal: g\n    env: android\n    " + body + "\n")
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{path}:5: tasks[0] (id 't')")
    assert fragment in info.value.problems[0]


def test_duplicate_ids_duplicate_keys_and_yaml_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        tasks:
          - {id: a, goal: g, env: android, success: {answer: {exact: x}}}
          - {id: a, goal: g, env: android, success: {answer: {exact: x}}}
        """,
    )
    assert found == [f"{tmp_path / 'suite.yaml'}:3: duplicate task id 'a' (first at line 2)"]

    found = problems(
        tmp_path,
        "tasks:\n  - id: a\n    id: b\n    goal: g\n    env: android\n    success: {answer: {exact: x}}\n",
    )
    assert found == [f"{tmp_path / 'suite.yaml'}:3: duplicate key 'id'"]

    found = problems(tmp_path, "tasks:\n  - id: a\n   goal: [unclosed\n")
    assert (
        len(found) == 1
        and found[0].startswith(f"{tmp_path / 'suite.yaml'}:")
        and "not valid YAML" in found[0]
    )

    assert problems(tmp_path, "") == [f"{tmp_path / 'suite.yaml'}:1: the file is empty"]
    assert "expected a mapping" in problems(tmp_path, "- a\n- b\n")[0]


def test_python_checks_are_imported_and_push_files_must_exist(tmp_path: Path) -> None:
    (tmp_path / "suitechecks_ok.py").write_text("def done(ctx):\n    return True\n")
    suite = load_suite(
        write(
            tmp_path, "tasks:\n  - {id: a, goal: g, env: android, success: {python: 'suitechecks_ok:done'}}\n"
        )
    )
    assert suite.tasks[0].id == "a"

    found = problems(
        tmp_path,
        """
        tasks:
          - id: a
            goal: g
            env: android
            setup:
              - push: {local: missing.bin, remote: /sdcard/x}
            success:
              any:
                - python: suitechecks_ok:absent
                - python: no_such_module_here:f
        """,
    )
    assert any(":6: file to push 'missing.bin' does not exist" in p for p in found)
    assert any(":9:" in p and "has no function 'absent'" in p for p in found)
    assert any(":10:" in p and "cannot import 'no_such_module_here'" in p for p in found)


def test_unreadable_suite_is_a_setup_error(tmp_path: Path) -> None:
    with pytest.raises(SetupError, match="cannot read suite"):
        load_suite(tmp_path / "absent.yaml")


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_suites_are_valid(path: Path) -> None:
    suite = load_suite(path)
    assert suite.tasks


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.text(max_size=8))
_KEYS = st.sampled_from(
    [
        "tasks",
        "id",
        "goal",
        "env",
        "success",
        "setup",
        "shell",
        "answer",
        "all",
        "not",
        "regex",
        "push",
        "android",
        "x",
    ]
)
_DATA = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_KEYS, children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.dictionaries(_KEYS, _DATA, max_size=3))
def test_arbitrary_documents_give_suite_errors_never_crashes(tmp_path: Path, data: dict[str, object]) -> None:
    import yaml

    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump({"tasks": [data]}) if "tasks" not in data else yaml.safe_dump(data))
    try:
        load_suite(path, resolve_python=False)
    except SuiteError as exc:
        assert exc.problems and all(p.startswith(f"{path}:") for p in exc.problems)


VALID_TASK = "tasks:\n  - id: t\n    goal: g\n    env: android\n    success: {answer: {exact: a}}\n"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (VALID_TASK.replace("goal: g", "goal: !!python/name:os.system"), 3, "tag !!python/name:os.system"),
        (VALID_TASK.replace("goal: g", "goal: !secret g"), 3, "tag !secret is not allowed"),
        (VALID_TASK.replace("success: {", "success: !check {"), 5, "tag !check is not allowed"),
        (
            VALID_TASK.replace("success: {", "success: !!python/object:os.Popen {"),
            5,
            "!!python/object:os.Popen",
        ),
        (VALID_TASK.replace("  - id: t", "  - !!set\n    id: t"), 2, "tag !!set is not allowed"),
        (VALID_TASK.replace("tasks:", "tasks: !list"), 1, "tag !list is not allowed"),
        (VALID_TASK.replace("env: android", "env: !!int android"), 4, "cannot read 'android' as !!int"),
    ],
)
def test_tags_are_refused_with_their_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1, found
    assert found[0].startswith(f"{tmp_path / 'suite.yaml'}:{line}: ") and fragment in found[0]


def test_tag_error_reaches_the_cli_as_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from screenpilot.cli.main import main

    path = write(tmp_path, VALID_TASK.replace("goal: g", "goal: !!python/name:os.system"))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        f"screenpilot: error: {path}:3: tag !!python/name:os.system"
    )


BILLION_LAUGHS = """
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
tasks: [*i]
"""


def test_exponential_aliases_are_refused_before_expanding(tmp_path: Path) -> None:
    found = problems(tmp_path, BILLION_LAUGHS)
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'suite.yaml'}:10: aliases (*i and others) would add more than")


def test_self_referring_alias_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, "tasks: &loop\n  - *loop\n")
    assert found == [f"{tmp_path / 'suite.yaml'}:2: alias *loop refers to a value that contains it"]


def test_modest_aliases_still_work(tmp_path: Path) -> None:
    steps = "\n".join(
        f"  - {{id: t{i}, goal: g, env: android, setup: *common, success: {{answer: {{exact: a}}}}}}"
        for i in range(1, 50)
    )
    text = (
        "tasks:\n  - id: t0\n    goal: g\n    env: android\n    setup: &common\n"
        "      - shell: svc wifi enable\n      - sleep: 1\n    success: {answer: {exact: a}}\n" + steps + "\n"
    )
    suite = load_suite(write(tmp_path, text))
    assert len(suite.tasks) == 50 and all(len(t.setup) == 2 for t in suite.tasks)


def test_every_problem_is_reported_in_one_pass(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        tasks:
          - id: a
            goal: g
            env: android
            success: {answer: {exact: x}}
          - id: a
            goal: g
            env: androidd
            setup:
              - push: {local: missing.bin, remote: /sdcard/x}
            success: {python: 'no_such_module_in_one_pass:f'}
          - id: b
            goal: !weird g
            env: android
            success: {answer: {exact: x}, colour: blue}
        """,
    )
    suite_file = tmp_path / "suite.yaml"
    assert [p.split(": ", 1)[0] for p in found] == [f"{suite_file}:{n}" for n in (6, 8, 10, 11, 13, 15)]
    assert "duplicate task id 'a' (first at line 2)" in found[0]
    assert "tasks[1] (id 'a').env: Input should be" in found[1]
    assert "file to push 'missing.bin' does not exist" in found[2]
    assert "cannot import 'no_such_module_in_one_pass'" in found[3]
    assert "tag !weird is not allowed" in found[4]
    assert "unknown key 'colour'" in found[5]


def test_merge_keys_are_reported_without_consequential_missing_fields(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        tasks:
          - {id: t0, goal: &g g, env: &env android, success: {answer: {exact: a}}}
          - <<: {env: *env, goal: *g}
            id: t
            success: {answer: {exact: a}}
        """,
    )
    assert found == [f"{tmp_path / 'suite.yaml'}:3: merge keys (<<) are not supported"]


def test_non_utf8_suite_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_bytes(VALID_TASK.encode().replace(b"goal: g", b"goal: \xff"))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    assert info.value.problems == [f"{path}:3: not UTF-8 text"]


def test_a_check_module_that_exits_on_import_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "suitechecks_exiting.py").write_text("import sys\nsys.exit(3)\n")
    found = problems(
        tmp_path, VALID_TASK.replace("{answer: {exact: a}}", "{python: 'suitechecks_exiting:f'}")
    )
    assert found == [
        f"{tmp_path / 'suite.yaml'}:5: cannot import 'suitechecks_exiting' for check "
        "'suitechecks_exiting:f': it exited (3)"
    ]


def test_deep_nesting_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    found = problems(tmp_path, "tasks: " + "[" * 3000 + "]" * 3000 + "\n")
    assert found == [f"{tmp_path / 'suite.yaml'}: not valid YAML: nested too deeply"]
