"""llama-cpp-python: ship its shared libraries (libllama, libggml*, GPU backends) in llama_cpp/lib.

llama_cpp loads them with ctypes from ``<package>/lib``, which PyInstaller cannot see; the GPU
variants (CUDA, Vulkan, Metal) put their backend libraries in the same folder. The optional
OpenAI-compatible server and its web dependencies are not part of the app.
"""

from PyInstaller.utils.hooks import collect_data_files, collect_dynamic_libs

binaries = collect_dynamic_libs("llama_cpp")
datas = collect_data_files("llama_cpp", excludes=["server/**"])
hiddenimports = ["llama_cpp.llama_cpp", "llama_cpp._ggml"]
excludedimports = ["llama_cpp.server", "uvicorn", "fastapi", "sse_starlette", "starlette_context"]
