"""A spec picks a flag provider by name; where it lives and which credentials reach it are the operator's.

The hostile ramp of the trust model (docs/security.md): a spec that names an address of its own and the
worker's database URL as the "token" variable. Today's specs cannot express it (they are refused with the
replacement), a run recorded before the change cannot follow it (its provider reference has no name), and
a name the operator did not declare reaches nothing. An HTTP listener on loopback stands for the
attacker's server: it must see no request at all.
"""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import FlagProviderError, SpecError
from orchestrator.flags import ProviderClients, build_provider, resolve
from orchestrator.flags.base import FlagTarget
from orchestrator.redact import redact
from orchestrator.specs.flags import FlagdProviderSpec, UnleashProviderSpec
from orchestrator.specs.operator import OperatorSettings, load_operator_settings
from tests.flags.helpers import load_ramp, ramp_yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET = "postgresql://orchestrator:marker-7f3a@127.0.0.1:5432/runs"


class Listener:
    """An HTTP server on 127.0.0.1 that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self) -> None:
                seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PATCH = _record

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    try:
        yield listener
    finally:
        listener.stop()


def operator(*providers: dict[str, object]) -> OperatorSettings:
    return OperatorSettings.model_validate({"kind": "OperatorSettings", "spec": {"flagProviders": list(providers)}})


def test_the_exfiltrating_ramp_is_refused_with_the_replacement(attacker: Listener) -> None:
    text = ramp_yaml("f", "app", f"{{type: unleash, url: '{attacker.url}/', tokenEnv: ORCHESTRATOR_DATABASE_URL}}",
                     checks="[]")
    with pytest.raises(SpecError) as refused:
        load_ramp(text)
    lines = refused.value.problems
    assert any("spec.provider.url: url is no longer written in a spec" in line for line in lines), lines
    assert any("spec.provider.tokenEnv: tokenEnv is no longer written" in line for line in lines), lines
    assert all("provider: {type: unleash, name: <one of its Unleash providers>}" in line
               for line in lines if "no longer written" in line)
    assert attacker.requests == []


def test_a_run_recorded_before_the_change_reaches_nothing(attacker: Listener) -> None:
    # What a run started by the previous release carries in its history: decodable, never followed.
    legacy = UnleashProviderSpec.model_validate(
        {"type": "unleash", "url": attacker.url, "tokenEnv": "ORCHESTRATOR_DATABASE_URL"})
    assert legacy.name is None
    clients = ProviderClients(env={"ORCHESTRATOR_DATABASE_URL": SECRET}, operator=operator(
        {"name": "main", "type": "unleash", "url": attacker.url}))
    with pytest.raises(FlagProviderError, match="locates its unleash provider itself") as refused:
        build_provider(legacy, FlagTarget("f"), clients)
    assert refused.value.retryable is False
    flagd = FlagdProviderSpec.model_validate({"type": "flagd", "file": "/etc/passwd"})
    with pytest.raises(FlagProviderError, match="no longer trusted"):
        build_provider(flagd, FlagTarget("f"), clients)
    assert attacker.requests == []


def test_the_token_goes_only_to_the_operators_address(attacker: Listener) -> None:
    spec = UnleashProviderSpec.model_validate({"type": "unleash", "name": "main"})
    clients = ProviderClients(
        env={"ORCHESTRATOR_UNLEASH_TOKEN": "unleash-token-9f2c41", "ORCHESTRATOR_DATABASE_URL": SECRET},
        operator=operator({"name": "main", "type": "unleash", "url": attacker.url}))
    provider = build_provider(spec, FlagTarget("f"), clients)
    with pytest.raises(FlagProviderError):
        provider.current()  # the listener's empty answer is not a flag; what matters is where it went
    assert [(m, p) for m, p, _ in attacker.requests] == [("GET", "/api/admin/projects/default/features/f")]
    assert attacker.requests[0][2]["Authorization"] == "unleash-token-9f2c41"
    assert SECRET not in str(attacker.requests)
    # The operator's variable holds a secret like the built-in ones: no message may carry its value.
    assert "unleash-token-9f2c41" not in redact("sent unleash-token-9f2c41 to the server")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "unleash", "name": "elsewhere"},
         "no unleash flag provider named 'elsewhere' in the operator settings (test.yaml); known unleash "
         "providers: main"),
        ({"type": "flagd", "name": "main"},
         "no flagd flag provider named 'main' in the operator settings (test.yaml); known flagd providers: local"),
        ({"type": "unleash", "name": "main", "project": "payments"},
         "unleash provider 'main' does not allow project 'payments' (the operator allows: default)"),
        ({"type": "unleash", "name": "main", "environment": "staging"},
         "unleash provider 'main' does not allow environment 'staging' (the operator allows: production)"),
    ],
)
def test_a_name_or_scope_the_operator_did_not_declare_is_refused(spec: dict[str, str], message: str) -> None:
    settings = operator(
        {"name": "main", "type": "unleash", "url": "http://127.0.0.1:1", "projects": ["default"],
         "environments": ["production"]},
        {"name": "local", "type": "flagd", "file": "/nonexistent/flags.json"},
    ).model_copy(update={"source": "test.yaml"})
    model = UnleashProviderSpec if spec["type"] == "unleash" else FlagdProviderSpec
    with pytest.raises(FlagProviderError) as refused:
        resolve(model.model_validate(spec), ProviderClients(operator=settings))
    assert str(refused.value) == message
    assert refused.value.retryable is False


def test_without_operator_settings_no_provider_exists() -> None:
    spec = FlagdProviderSpec.model_validate({"type": "flagd", "name": "local"})
    with pytest.raises(FlagProviderError, match=r"no operator settings file \(\$ORCHESTRATOR_SETTINGS_FILE\)"):
        resolve(spec, ProviderClients(env={}))


def test_the_operator_settings_file_is_read_through_the_hardened_loader(tmp_path: Path) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text("kind: OperatorSettings\nspec:\n  flagProviders:\n"
                    "    - {name: main, type: unleash, url: 'http://127.0.0.1:1'}\n"
                    "    - {name: main, type: flagd, file: relative/path.json}\n")
    with pytest.raises(SpecError) as bad:
        load_operator_settings(path)
    assert bad.value.problems == [
        f"{path}:5: spec.flagProviders.1.file: must be an absolute path on the worker, on one line"]
    path.write_text("kind: OperatorSettings\nspec:\n  flagProviders:\n"
                    "    - {name: main, type: unleash, url: 'http://127.0.0.1:1'}\n"
                    "    - {name: main, type: flagd, file: /flags.json}\n")
    with pytest.raises(SpecError, match=r":2: spec: flag provider names must be unique; 'main' appears more than"):
        load_operator_settings(path)
    path.write_text("kind: OperatorSettings\nspec:\n  flagProviders:\n"
                    "    - {name: f, type: flagd, configMap: {namespace: kube-system, name: x}}\n")
    with pytest.raises(SpecError, match=r":4: spec.flagProviders.0.configMap.namespace: kube-system is a system"):
        load_operator_settings(path)
    path.write_text("kind: OperatorSettings\nspec: {flagProviders: []}\nspec: {}\n")
    with pytest.raises(SpecError, match="duplicate key"):
        load_operator_settings(path)


def test_a_bad_operator_settings_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "operator.yaml"
    path.write_text("kind: OperatorSettings\nspec:\n  flagProviders:\n    - {name: main, type: unleash}\n")
    out = subprocess.run(
        [sys.executable, "-m", "orchestrator", "validate", str(path)], capture_output=True, text=True, timeout=60,
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == f"{path}:4: spec.flagProviders.0.url: required field is missing", out.stderr
    example = ROOT / "examples" / "operator-settings.yaml"
    assert load_operator_settings(example).flag_provider_names() == ["main", "shop-flags"]


@pytest.mark.parametrize("where", ["/dev/zero", "/nonexistent/flags.json", "/tmp"])
def test_the_operators_flag_file_is_read_through_the_bounded_reader(where: str) -> None:
    spec = FlagdProviderSpec.model_validate({"type": "flagd", "name": "local"})
    clients = ProviderClients(operator=operator({"name": "local", "type": "flagd", "file": where}))
    with pytest.raises(FlagProviderError) as refused:
        build_provider(spec, FlagTarget("f"), clients).current()
    assert str(refused.value).startswith(f"{where}:0: flag definitions: "), str(refused.value)
