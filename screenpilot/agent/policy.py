"""Policies see every action before it is executed and may approve, refuse, skip or edit it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal, Protocol, TextIO, runtime_checkable

from screenpilot.actions.types import Action, action_to_dict


@dataclass(frozen=True)
class Verdict:
    """``approve`` executes ``action`` (possibly edited); ``skip`` records it unexecuted and goes on;
    ``refuse`` tells the model it was refused; ``abort`` ends the episode."""

    kind: Literal["approve", "skip", "refuse", "abort"]
    action: Action
    reason: str | None = None


@runtime_checkable
class Policy(Protocol):
    def review(self, action: Action, *, step: int) -> Verdict:
        """``action`` is in device pixels."""
        ...


class ApproveAll:
    def review(self, action: Action, *, step: int) -> Verdict:
        return Verdict("approve", action)


class DryRun:
    """Decide, never execute: every action is recorded as skipped."""

    def review(self, action: Action, *, step: int) -> Verdict:
        return Verdict("skip", action, "dry run")


class Confirm:
    """Ask on the terminal before each action: yes, no (refuse), skip or quit."""

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stderr

    def review(self, action: Action, *, step: int) -> Verdict:
        described = " ".join(f"{k}={v}" for k, v in action_to_dict(action).items())
        while True:
            self.stdout.write(f"step {step}: {described}\n  execute? [y]es / [n]o / [s]kip / [q]uit: ")
            self.stdout.flush()
            line = self.stdin.readline()
            if not line:  # end of input: never execute without consent
                return Verdict("abort", action, "no answer on the terminal")
            answer = line.strip().lower()[:1]
            if answer == "y":
                return Verdict("approve", action)
            if answer == "n":
                return Verdict("refuse", action, "the user refused this action")
            if answer == "s":
                return Verdict("skip", action, "skipped by the user")
            if answer == "q":
                return Verdict("abort", action, "stopped by the user")
