"""The closed loop through the MLflow model registry (``monitoring.retrain.registry:
models:/credit@champion``): the champion is the version the alias names, fetched and verified
into the local cache; a promoted challenger is registered as a new version of that model and
the alias moved to it; a service serving ``models:/NAME@ALIAS`` is asked to reload with no
version (it resolves the alias again) and must then serve the new version, or the alias moves
back. A refused challenger is not registered: the registry holds only versions that were
promoted (or, after a failed reload, were promoted and taken back, without the alias).

One retraining at a time per registered model on this machine: the lock is a file in the
model's cache folder. Two machines retraining the same model are not serialised by it; the
alias is checked again just before it is moved, so a move made meanwhile elsewhere is not
overwritten silently (but that check and the move are not one atomic step).
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmill.bundle import Bundle, read_bundle
from modelmill.errors import ConfigError, ModelmillError, ServingError
from modelmill.retraining.promote import LOCK_FILE, Service, VersionFolder
from modelmill.tracking.client import URI_VARIABLE, mlflow_client, redact, tracking_uri
from modelmill.tracking.fetch import cache_folder, fetch_version
from modelmill.tracking.registry import ModelRef, get_version, parse_model_uri, resolve

if TYPE_CHECKING:
    from modelmill.config import PipelineConfig
    from modelmill.retraining.retrain import Champion, Decision, Say

BOTH_WAYS = ("--versions FOLDER (a folder of versions 1/, 2/, …) or monitoring.retrain.registry: models:/NAME@ALIAS "
             "in the config (a registered model in MLflow)")


def open_versions(config: PipelineConfig, versions: Path | None, *,
                  shadow_first: bool = False) -> VersionFolder | RegistryVersions:
    """Where the champion is and challengers go: the folder ``--versions`` names, or the
    registered model of ``monitoring.retrain.registry`` (exactly one of them).

    Raises:
        ConfigError: both or neither given; ``--shadow-first`` with the registry; no tracking
            server known for the registry.
    """
    registry = config.monitoring.retrain.registry
    if registry is not None and versions is not None:
        raise ConfigError(f"both --versions {versions} and monitoring.retrain.registry {registry!r} say where the "
                          f"champion is. Fix: give one of them: {BOTH_WAYS}")
    if registry is None and versions is None:
        raise ConfigError(f"retraining needs to know where the champion is and where a challenger goes. Fix: give "
                          f"{BOTH_WAYS}")
    if versions is not None:
        return VersionFolder(versions)
    assert registry is not None
    if shadow_first:
        raise ConfigError(f"--shadow-first needs a folder of versions: the challenger in shadow is a hidden local "
                          f"folder (.shadow/) beside the served versions, which a registered model ({registry}) has "
                          "not. Fix: leave --shadow-first out, or retrain with --versions FOLDER")
    # the registry is asked for explicitly: tracking.enabled (whether runs are logged) does not turn it off
    uri = tracking_uri(config.tracking.model_copy(update={"enabled": True}))
    if uri is None:
        raise ConfigError(f"monitoring.retrain.registry {registry!r} needs the MLflow tracking server that holds "
                          f"the model registry. Fix: set tracking.uri in the config, or {URI_VARIABLE}")
    return RegistryVersions(parse_model_uri(registry), uri)


class RegistryVersions:
    """The versions of one registered model, the champion being the one ``ref.alias`` names."""

    def __init__(self, ref: ModelRef, uri: str) -> None:
        assert ref.alias is not None  # the config's validator wants models:/NAME@ALIAS
        self.ref, self.uri, self.alias = ref, uri, ref.alias
        self.path = cache_folder(uri, ref.name)  # the fetched versions; a folder of versions itself
        self._client: Any = None

    def __str__(self) -> str:
        return f"{self.ref} at {redact(self.uri)}"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.uri)
        return self._client

    @contextmanager
    def lock(self, waiting: Any = None) -> Iterator[None]:
        """One retraining at a time per registered model on this machine (not across machines)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK_FILE, "a+b") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if waiting is not None:
                    waiting(f"another retraining of {self.ref} runs on this machine; waiting for it to end")
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def aliased(self) -> str:
        """The version the alias names now (asking the server)."""
        return str(resolve(self.client, self.ref, self.uri).version)

    def fetch(self, version: str) -> Path:
        """The cached, verified copy of ``version`` (fetched when not there yet)."""
        return fetch_version(self.client, self.uri, get_version(self.client, self.uri, self.ref.name, version))

    def bundle(self, version: str) -> Bundle:
        return read_bundle(self.fetch(version))

    def connect(self, url: str, token_env: str) -> Service:
        """The service at ``url``, which must serve this model's alias and the version it names."""
        service = Service.reach(url, token_env)
        registry = service.served.get("registry")
        if not isinstance(registry, dict):
            raise ServingError(f"--serve {url} does not serve a registered model (it serves a bundle or a folder of "
                               f"versions), so moving {self.ref} would not change what it serves. Fix: serve "
                               f"{self.ref} (modelmill serve {self.ref}), or retrain with --versions FOLDER")
        if registry.get("model") != self.ref.name or registry.get("alias") != self.alias:
            alias = f"@{registry.get('alias')}" if registry.get("alias") else " (no alias: a pinned version)"
            raise ServingError(f"--serve {url} serves registered model {registry.get('model')!r}{alias}, not "
                               f"{self.ref}. Fix: give the service that serves {self.ref}, or set "
                               "monitoring.retrain.registry to what it serves")
        aliased = self.aliased()
        if service.version != aliased:
            raise ServingError(f"--serve {url} serves version {service.version} of {self.ref.name!r}, but "
                               f"{self.ref} names version {aliased}: its prediction log would not be the "
                               f"champion's. Fix: reload the service (POST /v1/admin/reload), or move the alias "
                               f"back (modelmill promote {self.ref.name} {service.version} --alias {self.alias})")
        manifest = self.bundle(aliased).manifest
        if service.served.get("created_at") != manifest.get("created_at") or \
                service.served.get("name") != manifest.get("name"):
            raise ServingError(f"--serve {url} serves a version {service.version} that is not the one "
                               f"{self.ref} names at {redact(self.uri)}. Fix: give the service that serves it")
        return service

    def champion(self, service: Service | None) -> Champion:
        """The version the alias names (the service was checked to serve it), fetched and verified."""
        from modelmill.predictor import Predictor
        from modelmill.retraining.retrain import Champion

        version = service.version if service is not None else self.aliased()
        try:
            bundle = self.bundle(version)
            return Champion(version, bundle, Predictor.from_bundle(bundle))
        except ModelmillError as exc:
            raise ServingError(f"version {version} of {self.ref} does not load: {exc}") from None

    def describe(self, champion: str, challenger: str | None) -> dict[str, Any]:
        """What the audit record keeps of the registry."""
        return {"model": self.ref.name, "alias": self.alias, "tracking_uri": redact(self.uri),
                "champion": champion, "challenger": challenger}

    def promote(self, decision: Decision, service: Service | None, say: Say, *, key: bytes | None = None) -> Decision:
        """Register the challenger, move the alias to it, and have the service reload it; the
        alias moves back when the service does not take it (the version stays registered)."""
        from modelmill.retraining.retrain import reload
        from modelmill.tracking.registry import promote, register

        assert decision.bundle is not None and decision.champion is not None
        champion, name = decision.champion, self.ref.name
        moved = self.aliased()
        if moved != champion:  # a person, or another machine, promoted meanwhile: theirs stands
            decision.outcome = "failed"
            decision.reason += (f"; but {self.ref} was moved to version {moved} while the challenger was trained, "
                                "so it was not registered")
            return decision
        version = str(register(self.uri, decision.bundle, name, key=key,
                               description=f"retrained from version {champion} ({decision.trigger}): "
                               f"{decision.reason}"[:4000]).version)
        decision.challenger = version
        say(f"registered the challenger as version {version} of {name!r}")
        before = promote(self.uri, name, version, self.alias)
        if before != champion:
            decision.outcome = "failed"
            moved_to = f"version {before}" if before else "no version"
            decision.reason += (f"; but {self.ref} was moved to {moved_to} while version {version} was "
                                f"registered" + self._move_back(before or champion, version))
            return decision
        say(f"{self.ref} → version {version} (was version {champion})")
        decision.outcome = "promoted"
        if service is None:
            return decision
        loaded = reload(service, version, pinned=False)
        if isinstance(loaded, dict):
            try:
                served = service.model()
            except ServingError as exc:
                served, loaded = {}, f"{exc}"
            if isinstance(loaded, dict) and str(served.get("version")) != version:
                loaded = f"after its reload it serves version {served.get('version')}, not {version}"
        if isinstance(loaded, str):  # the service did not take it: the alias must not name it
            decision.outcome = "failed"
            decision.reason += f"; but the service did not load it: {loaded}" + self._move_back(champion, version)
        else:
            decision.figures["reload_seconds"] = loaded.get("seconds")
        return decision

    def _move_back(self, to: str, taken: str) -> str:
        """The alias back on version ``to``: what to add to the reason."""
        from modelmill.tracking.registry import promote

        try:
            promote(self.uri, self.ref.name, to, self.alias)
        except ModelmillError as exc:
            return (f"; moving {self.ref} back to version {to} failed too: {exc}. Fix: modelmill promote "
                    f"{self.ref.name} {to} --alias {self.alias}")
        return f"; {self.ref} names version {to} again (version {taken} stays registered, without the alias)"
