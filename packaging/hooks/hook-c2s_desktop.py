"""c2s_desktop registers CLI commands and GUI panels by import; collect every module."""

from PyInstaller.utils.hooks import collect_submodules, copy_metadata

hiddenimports = collect_submodules("c2s_desktop")
datas = copy_metadata("c2s-desktop")
