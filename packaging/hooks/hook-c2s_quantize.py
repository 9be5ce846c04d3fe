"""c2s_quantize imports its modules lazily and reads its catalogue with importlib.resources."""

from PyInstaller.utils.hooks import collect_data_files, collect_submodules, copy_metadata

hiddenimports = collect_submodules("c2s_quantize")
datas = collect_data_files("c2s_quantize") + copy_metadata("c2s-quantize")
