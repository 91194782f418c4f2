"""Rollout backends: the local router, real commands, and the atomic state file."""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from canary_stats.errors import CanaryStatsError, InputError
from canary_stats.rollout import (
    Backend,
    BackendError,
    CommandBackend,
    CommandSettings,
    FileBackend,
    LocalBackend,
    Router,
    backend_from_settings,
)

#: Values a shell would act on if it ever parsed them.
NASTY = ["v2; touch PWNED", "$(touch PWNED)", "a b 'c\" `touch PWNED`", "x\ny"]


def commands(**templates: str | None) -> CommandSettings:
    return CommandSettings.from_dict({"set_weight": "true", "stop_canary": "true", **templates})


def test_every_backend_satisfies_the_protocol(tmp_path: Path) -> None:
    for b in (
        LocalBackend(Router(stable="v1", canary="v2")),
        CommandBackend(commands()),
        FileBackend(tmp_path / "state.json"),
    ):
        assert isinstance(b, Backend)


class TestLocalBackend:
    def test_set_weight_resets_on_a_new_pair_and_is_idempotent(self) -> None:
        router = Router(stable="v1", canary="v2")
        backend = LocalBackend(router)
        backend.set_weight(10, stable="v1", canary="v2")
        assert (router.weight, router.salt) == (10.0, "v2")
        backend.set_weight(10, stable="v1", canary="v2")
        assert router.weight == 10.0
        backend.set_weight(1, stable="v2", canary="v3")
        assert (router.stable, router.canary, router.salt, router.weight) == ("v2", "v3", "v3", 1)
        with pytest.raises(InputError, match=r"^weight: expected"):
            backend.set_weight(101, stable="v3", canary="v4")
        assert router.canary == "v3"  # a bad weight leaves the pair alone

    def test_stop_canary_drains_in_flight_work(self) -> None:
        router = Router(stable="v1", canary="v2", weight=100)
        backend = LocalBackend(router)
        release = threading.Event()
        entered = threading.Event()

        def work() -> None:
            with router.task("alice"):
                entered.set()
                release.wait(10)

        t = threading.Thread(target=work)
        t.start()
        entered.wait(10)
        assert backend.stop_canary(drain_timeout=0.05) is False
        assert router.route("bob").cohort == "stable"
        release.set()
        assert backend.stop_canary(drain_timeout=10) is True  # repeated: idempotent
        t.join()
        with pytest.raises(InputError, match=r"^weight: the canary v2 was stopped"):
            backend.set_weight(5, stable="v1", canary="v2")
        backend.set_weight(5, stable="v2", canary="v3")  # a new pair routes again
        assert router.accepting_canary

    def test_caches_and_manifest(self) -> None:
        calls: list[int] = []
        backend = LocalBackend(Router(stable="v1", canary="v2"), invalidate=lambda: calls.append(1))
        backend.invalidate_caches()
        backend.apply_manifest("kind: AgentRelease\n", version="v1")
        backend.apply_manifest("kind: AgentRelease\n", version="v1")
        assert calls == [1]
        assert (backend.manifest_version, backend.manifest_text) == ("v1", "kind: AgentRelease\n")
        assert backend.router.stable == "v1"  # re-applying a manifest moves no traffic


class TestCommandSettings:
    def test_from_file(self, tmp_path: Path) -> None:
        path = tmp_path / "commands.yaml"
        path.write_text(
            "commands:\n"
            "  set_weight: mesh-cli weight --canary {canary} --percent {weight}\n"
            "  stop_canary: mesh-cli abort --wait {drain_timeout}\n"
        )
        settings = CommandSettings.from_file(path)
        assert settings.stop_canary == "mesh-cli abort --wait {drain_timeout}"
        assert settings.apply_manifest is None

    @pytest.mark.parametrize(
        ("doc", "message"),
        [
            ({"set_weight": "x", "stop": "y"}, r"^stop: Extra inputs are not permitted"),
            ({"stop_canary": "x"}, r"^set_weight: Field required"),
            ({"set_weight": 3}, r"^set_weight: Input should be a valid string"),
            ({"set_weight": "  "}, r"^set_weight: expected a command"),
            ({"set_weight": "echo 'open"}, r"^set_weight: cannot split the command"),
            ({"set_weight": "echo {wieght}"}, r"^set_weight: unknown placeholder \{wieght\}"),
            ({"set_weight": "x", "stop_canary": "abort {canary}"},
             r"^stop_canary: unknown placeholder \{canary\}; allowed: \{drain_timeout\}"),
            ({"set_weight": "x", "invalidate_caches": "flush {stable}"},
             r"^invalidate_caches: unknown placeholder \{stable\}; allowed: none"),
            (["set_weight"], r"^commands: expected a mapping; got list"),
            ({"set_weight": "mesh weight {canary} {weight}"},
             r"^stop_canary: required when set_weight uses \{stable\} or \{canary\}"),
        ],
    )  # fmt: skip
    def test_errors_name_the_key(self, doc: object, message: str) -> None:
        with pytest.raises(InputError, match=message):
            CommandSettings.from_dict(doc)

    def test_file_errors(self, tmp_path: Path) -> None:
        with pytest.raises(InputError, match="cannot read the commands"):
            CommandSettings.from_file(tmp_path / "missing.yaml")
        bad = tmp_path / "bad.yaml"
        bad.write_text("set_weight: [unclosed\n")
        with pytest.raises(InputError, match="not valid YAML"):
            CommandSettings.from_file(bad)

    def test_json_braces_are_not_placeholders(self) -> None:
        s = commands(apply_manifest='kubectl patch x -p \'{"spec":{"v":"{version}"}}\'')
        assert s.apply_manifest is not None


def recorder(out: Path, *placeholders: str) -> str:
    """A command writing its arguments, NUL-separated, to ``out`` (no shell)."""
    code = "import sys; open(sys.argv[1], 'w').write('\\0'.join(sys.argv[2:]))"
    args = " ".join(placeholders)
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(out))} {args}"


def recorded(out: Path) -> list[str]:
    return out.read_text().split("\0")


class TestCommandBackend:
    def test_set_weight_templates_values(self, tmp_path: Path) -> None:
        out = tmp_path / "args"
        template = recorder(out, "{weight}", "{stable_weight}", "{stable}", "{canary}")
        backend = CommandBackend(commands(set_weight=template))
        backend.set_weight(0.05, stable="v1", canary="v2")
        assert recorded(out) == ["0.05", "99.95", "v1", "v2"]
        backend.set_weight(10, stable="v1", canary="v2")
        backend.set_weight(10, stable="v1", canary="v2")
        assert recorded(out) == ["10", "90", "v1", "v2"]
        with pytest.raises(InputError, match=r"^weight: expected"):
            backend.set_weight(-1, stable="v1", canary="v2")

    @pytest.mark.parametrize("value", NASTY)
    def test_values_are_never_parsed_by_a_shell(
        self, tmp_path: Path, value: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.chdir(tmp_path)
        out = tmp_path / "args"
        # As an argument of its own, and inside the text of an `sh -c` script.
        CommandBackend(commands(set_weight=recorder(out, "--canary={canary}", "{stable}"))
                       ).set_weight(5, stable=value, canary=value)  # fmt: skip
        assert recorded(out) == [f"--canary={value}", value]
        script = commands(set_weight="sh -c 'printf %s {canary} > \"$OUT\"'")
        CommandBackend(script, env={"OUT": str(out)}).set_weight(5, stable="v1", canary=value)
        assert out.read_text() == value
        positional = commands(set_weight='sh -ec \'printf %s "$1" > "$OUT"\' sh {canary}')
        CommandBackend(positional, env={"OUT": str(out)}).set_weight(5, stable="v", canary=value)
        assert out.read_text() == value
        assert not (tmp_path / "PWNED").exists()

    def test_a_failing_command_names_itself(self) -> None:
        template = "sh -c 'echo first >&2; echo the reason >&2; exit 3'"
        backend = CommandBackend(commands(set_weight=template))
        with pytest.raises(BackendError) as info:
            backend.set_weight(1, stable="v1", canary="v2")
        err = info.value
        assert isinstance(err, CanaryStatsError)
        assert (err.backend, err.command, err.returncode) == ("command", template, 3)
        assert err.stderr == "first\nthe reason"
        assert str(err).startswith(f"command: set_weight command {template!r} exited with 3")
        assert str(err).endswith("the reason")

    def test_missing_program_and_timeout(self) -> None:
        missing = CommandBackend(commands(set_weight="no-such-program-xyz {weight}"))
        with pytest.raises(BackendError, match="did not start") as info:
            missing.set_weight(1, stable="v1", canary="v2")
        assert info.value.returncode is None
        # The shell's child (sleep) is killed with it, or communicate() would wait 30 s.
        slow = CommandBackend(commands(set_weight="sh -c 'sleep 30; true'"), timeout=0.2)
        t0 = time.monotonic()
        with pytest.raises(BackendError, match=r"timed out after 0\.2 s"):
            slow.set_weight(1, stable="v1", canary="v2")
        assert time.monotonic() - t0 < 5

    def test_stop_canary_and_drain(self, tmp_path: Path) -> None:
        out = tmp_path / "args"
        stop = recorder(out, "stop", "{drain_timeout}")
        backend = CommandBackend(commands(stop_canary=stop))
        assert backend.stop_canary(drain_timeout=2.5) is True  # no drain command
        assert recorded(out) == ["stop", "2.5"]
        for drain, drained in [("true", True), ("sh -c 'exit 1'", False)]:
            b = CommandBackend(commands(stop_canary="true", drain=drain))
            assert b.stop_canary(drain_timeout=5) is drained
        slow = CommandBackend(commands(stop_canary="true", drain="sleep 30"))
        t0 = time.monotonic()
        assert slow.stop_canary(drain_timeout=0.2) is False
        assert time.monotonic() - t0 < 5
        with pytest.raises(InputError, match=r"^drain_timeout: expected seconds"):
            slow.stop_canary(drain_timeout=-1)

    def test_stop_without_a_stop_command_sets_weight_zero(self, tmp_path: Path) -> None:
        out = tmp_path / "args"
        template = recorder(out, "{weight}", "{stable_weight}")
        backend = CommandBackend(commands(set_weight=template, stop_canary=None))
        assert backend.stop_canary(drain_timeout=1) is True  # no set_weight before: a restart
        assert recorded(out) == ["0", "100"]

    def test_apply_manifest_and_caches(self, tmp_path: Path) -> None:
        out, seen = tmp_path / "copy", tmp_path / "args"
        text = "apiVersion: agents/v1\nkind: AgentRelease\n"
        settings = commands(
            apply_manifest='sh -c \'cp "$1" "$OUT"; printf %s "$1 $2" > "$SEEN"\' '
            "sh {manifest} {version}",
            invalidate_caches=recorder(tmp_path / "flushed", "flush"),
        )
        backend = CommandBackend(settings, env={"OUT": str(out), "SEEN": str(seen)})
        backend.apply_manifest(text, version="v1")
        assert out.read_text() == text
        path, version = seen.read_text().split(" ")
        assert version == "v1"
        assert not Path(path).exists()  # the temporary file is gone
        backend.invalidate_caches()
        assert recorded(tmp_path / "flushed") == ["flush"]
        CommandBackend(commands()).invalidate_caches()  # not configured: nothing to do
        CommandBackend(commands()).apply_manifest(text, version="v1")


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


class TestFileBackend:
    @pytest.fixture
    def backend(self, tmp_path: Path) -> FileBackend:
        return FileBackend(tmp_path / "router.json", clock=Clock())

    def read(self, b: FileBackend) -> dict[str, object]:
        loaded: dict[str, object] = json.loads(b.path.read_text())
        return loaded

    def test_state_file(self, backend: FileBackend) -> None:
        backend.set_weight(0.05, stable="v1", canary="v2")
        assert self.read(backend) == {
            "stable": "v1", "canary": "v2", "weight": 0.05, "accepting_canary": True,
            "manifest_version": None, "updated_at": "2026-11-01T00:00:01.000+00:00",
        }  # fmt: skip
        assert backend.stop_canary(drain_timeout=1) is True
        state = self.read(backend)
        assert (state["weight"], state["accepting_canary"], state["canary"]) == (0.0, False, "v2")

    def test_idempotent_and_keeps_other_fields(self, backend: FileBackend) -> None:
        backend.set_weight(10, stable="v1", canary="v2")
        state = {**self.read(backend), "observed_by": "mesh-agent"}  # the reader's own field
        backend.path.write_text(json.dumps(state))
        before = backend.path.read_text()
        backend.set_weight(10, stable="v1", canary="v2")
        assert backend.path.read_text() == before  # nothing changed: nothing written
        backend.apply_manifest("kind: AgentRelease\n", version="v1")
        backend.apply_manifest("kind: AgentRelease\n", version="v1")
        after = self.read(backend)
        assert after["observed_by"] == "mesh-agent"
        assert (after["weight"], after["manifest_version"]) == (10.0, "v1")
        assert backend.manifest_path.read_text() == "kind: AgentRelease\n"
        assert backend.manifest_path.name == "router.manifest.yaml"
        backend.invalidate_caches()
        assert self.read(backend)["caches_invalidated_at"] == "2026-11-01T00:00:03.000+00:00"

    def test_stopped_canary_needs_a_new_pair(self, backend: FileBackend) -> None:
        backend.set_weight(10, stable="v1", canary="v2")
        backend.stop_canary(drain_timeout=0)
        backend.stop_canary(drain_timeout=0)
        backend.set_weight(0, stable="v1", canary="v2")
        with pytest.raises(InputError, match=r"^weight: the canary v2 was stopped"):
            backend.set_weight(10, stable="v1", canary="v2")
        backend.set_weight(1, stable="v2", canary="v3")
        state = self.read(backend)
        assert (state["stable"], state["accepting_canary"], state["weight"]) == ("v2", True, 1.0)

    def test_broken_state_is_an_error(self, backend: FileBackend) -> None:
        backend.path.write_text("{not json")
        with pytest.raises(BackendError, match=r"router\.json is not valid JSON"):
            backend.set_weight(1, stable="v1", canary="v2")
        missing = FileBackend(backend.path.parent / "no-such-dir" / "state.json")
        with pytest.raises(BackendError, match="cannot write"):
            missing.set_weight(1, stable="v1", canary="v2")

    def test_readers_never_see_a_partial_file(self, tmp_path: Path) -> None:
        backend = FileBackend(tmp_path / "router.json")
        backend.set_weight(0, stable="v1", canary="v2")
        done = threading.Event()
        reads, bad = [0], list[str]()

        def reader() -> None:
            while not done.is_set():
                text = backend.path.read_text()
                try:
                    json.loads(text)
                except ValueError:
                    bad.append(text)
                reads[0] += 1

        t = threading.Thread(target=reader)
        t.start()
        try:
            for i in range(300):
                backend.set_weight(i % 100 + 0.5, stable="v1", canary="v2")
        finally:
            done.set()
            t.join()
        assert bad == []
        assert reads[0] > 50
        assert [p.name for p in tmp_path.iterdir()] == ["router.json"]  # no temp files left


class TestFactory:
    def test_kinds(self, tmp_path: Path) -> None:
        router = Router(stable="v1", canary="v2")
        local = backend_from_settings("local", router=router)
        assert isinstance(local, LocalBackend) and local.router is router
        assert isinstance(backend_from_settings("local"), LocalBackend)
        path = tmp_path / "commands.yaml"
        path.write_text("set_weight: 'true'\n")
        cmd = backend_from_settings("command", commands=path, timeout=5, env={"A": "1"})
        assert isinstance(cmd, CommandBackend) and cmd.timeout == 5 and cmd.env["A"] == "1"
        file = backend_from_settings("file", path=tmp_path / "state.json")
        assert isinstance(file, FileBackend)

    @pytest.mark.parametrize(
        ("kind", "message"),
        [("command", r"^commands: the command backend needs"),
         ("file", r"^path: the file backend needs"),
         ("argo", r"^backend: expected one of local, command, file; got 'argo'")],
    )  # fmt: skip
    def test_errors(self, kind: str, message: str) -> None:
        with pytest.raises(InputError, match=message):
            backend_from_settings(kind)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _no_stray_threads() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    assert set(threading.enumerate()) <= before
