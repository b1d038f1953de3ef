"""The plugin's keyboard shortcuts, registered with napari's action manager.

Every key is registered once as a napari action (``napari-instseg:<name>``) bound on the
viewer, so it shows in napari's shortcut settings, works whatever layer is active (the
prompt points while prompting, the labels while painting) and can be checked against
napari's own bindings. The keys avoid everything napari 0.9 binds (layer keymaps, viewer
actions, app-model keybindings, the menu bar's Alt mnemonics).

A widget offers handlers for the actions it implements with :func:`offer`; a key press
calls the most recent live handler of that viewer (so the review mode can take over
accept / reject while it runs, and give them back when it stops).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["KEYS", "Key", "help_text", "offer", "shortcut", "withdraw"]


@dataclass(frozen=True)
class Key:
    """One shortcut: the key combination (napari spelling) and what it does."""

    key: str
    description: str


KEYS: dict[str, Key] = {
    # prompting (Prompt panel)
    "segment": Key("Shift+S", "segment again from the prompts"),
    "commit": Key("Shift+C", "commit the candidate as a new instance (reviewed by you)"),
    "clear": Key("Shift+X", "clear prompts and candidate"),
    "next_candidate": Key("Shift+N", "next candidate mask"),
    "toggle_polarity": Key("Shift+T", "toggle positive / negative clicks"),
    # reviewing (Prompt panel: the selected instance; review mode: the current pre-label)
    "accept": Key("Shift+Y", "accept the pre-label"),
    "reject": Key("Shift+R", "reject the pre-label"),
    "edit": Key("Shift+E", "review mode: start editing the current pre-label (paint)"),
    "finish": Key("Shift+F", "review mode: finish the edit and go on"),
    "next_item": Key("Shift+Right", "review mode: skip to the next pre-label"),
    "previous_item": Key("Shift+Left", "review mode: back to the previous pre-label"),
    # instance table (Instances panel)
    "tier_none": Key("Alt+1", "tier: none"),
    "tier_partial": Key("Alt+2", "tier: partial"),
    "tier_heavy": Key("Alt+3", "tier: heavy"),
    "toggle_crowd": Key("Alt+G", "crowd (group) on / off"),
    "bring_forward": Key("Shift+Up", "bring the selected instance forward"),
    "send_backward": Key("Shift+Down", "send the selected instance backward"),
    "undo": Key("Alt+Z", "undo the last action"),
    "redo": Key("Alt+Y", "redo"),
}
"""Action name -> key. Names are also the ``_on_<name>`` methods of the widgets."""

_PREFIX = "napari-instseg"
_registered = False
_HANDLERS: dict[int, tuple[weakref.ref[Any], dict[str, list[Any]]]] = {}
"""id(viewer) -> (weak ref to the viewer, action name -> weak refs to handlers, latest last)."""


def shortcut(name: str) -> str:
    """The key of action ``name`` ("Shift+C")."""
    return KEYS[name].key


def help_text(names: list[str]) -> str:
    """Lines "Shift+C: commit ..." for ``names``."""
    return "\n".join(f"{KEYS[n].key}: {KEYS[n].description}" for n in names)


def _register() -> None:
    global _registered
    if _registered:
        return
    from napari.components import ViewerModel
    from napari.utils.action_manager import action_manager

    for name, key in KEYS.items():
        action_manager.register_action(
            f"{_PREFIX}:{name}",
            _command(name),
            key.description,
            ViewerModel,
        )
        action_manager.bind_shortcut(f"{_PREFIX}:{name}", key.key)
    _registered = True


def _command(name: str) -> Callable[[Any], None]:
    def command(viewer: Any) -> None:
        trigger(viewer, name)

    command.__name__ = f"instseg_{name}"
    return command


def _weak(handler: Callable[[], Any]) -> Any:
    """A weak reference to a handler (widgets die with their viewer, handlers with them)."""
    if hasattr(handler, "__self__"):
        return weakref.WeakMethod(handler)
    return weakref.ref(handler)


def _table(viewer: Any) -> dict[str, list[Any]]:
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins a PublicOnlyProxy
    ref, table = _HANDLERS.get(id(viewer), (None, None))
    if ref is None or ref() is not viewer or table is None:
        table = {}
        _HANDLERS[id(viewer)] = (weakref.ref(viewer), table)
    return table


def offer(viewer: Any, handlers: dict[str, Callable[[], Any]], *, fallback: bool = False) -> None:
    """Make ``handlers`` (action name -> callable) answer the keys in ``viewer``; with
    ``fallback`` only while no other live handler of the action does (a panel that offers
    undo for its own runs leaves the key to the Instances panel when that one is open)."""
    _register()
    table = _table(viewer)
    for name, handler in handlers.items():
        if name not in KEYS:
            raise KeyError(f"{name!r} is not one of the plugin's actions {sorted(KEYS)}")
        refs = table.setdefault(name, [])
        if fallback:
            refs.insert(0, _weak(handler))  # the latest handler answers: this one only when alone
        else:
            refs.append(_weak(handler))


def withdraw(viewer: Any, handlers: dict[str, Callable[[], Any]]) -> None:
    """Stop ``handlers`` answering (the previous ones answer again)."""
    table = _table(viewer)
    for name, handler in handlers.items():
        table[name] = [ref for ref in table.get(name, []) if ref() not in (None, handler)]


def trigger(viewer: Any, name: str) -> None:
    """Run the current handler of action ``name`` in ``viewer`` (or say which panel has it)."""
    live = [handler for handler in (ref() for ref in _table(viewer).get(name) or []) if handler is not None]
    if not live:
        from napari.utils.notifications import show_info

        show_info(f"{KEYS[name].key} ({KEYS[name].description}): open the Instance Segmentation panel first.")
        return
    live[-1]()
