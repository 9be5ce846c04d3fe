"""The window's actions: one way to make one, so its shortcut works anywhere in the window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget


def window_menu(window: QWidget, name: str) -> QMenu | None:
    """The window's menu ``name`` ("file", "tasks", "view", ...), None where it has none."""
    menus: dict[str, QMenu] = getattr(window, "menus", {})
    return menus.get(name)


def window_action(
    window: QWidget,
    text: str,
    slot: Callable[..., Any],
    shortcut: QKeySequence | QKeySequence.StandardKey | str | None = None,
    menu: QMenu | str | None = None,
) -> QAction:
    """An action of ``window`` that calls ``slot``: added to the window (its shortcut works
    wherever the focus is) and to ``menu``, a menu or the name of one of the window's (when the
    window has it)."""
    action = QAction(text, window)
    if shortcut is not None:
        action.setShortcut(QKeySequence(shortcut))
    action.triggered.connect(slot)
    window.addAction(action)
    if isinstance(menu, str):
        menu = window_menu(window, menu)
    if menu is not None:
        menu.addAction(action)
    return action
