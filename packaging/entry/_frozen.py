"""Start-up shared by the bundle's executables (c2s-desktop, c2s, c2s-quantize).

A frozen executable is also the interpreter of its own child processes:
- ``multiprocessing`` (spawn) re-executes it with ``--multiprocessing-fork``: the model process;
- c2s-quantize's llama.cpp work runs ``sys.executable -m c2s_quantize._worker ...``;
- the first look at a new HDF5 file runs ``sys.executable -m c2s_desktop.core.inspect_child``.
``dispatch_child()`` serves both before the app is imported, then returns for a normal start.
"""

from __future__ import annotations

import multiprocessing
import sys


def dispatch_child() -> None:
    """Run a child process's work and exit, if this process is one."""
    multiprocessing.freeze_support()  # exits here in a model process
    argv = sys.argv[1:]
    if len(argv) >= 2 and argv[0] == "-m" and argv[1] == "c2s_quantize._worker":
        from c2s_quantize._worker import main

        sys.exit(main(argv[2:]))
    if len(argv) >= 2 and argv[0] == "-m" and argv[1] == "c2s_desktop.core.inspect_child":
        from c2s_desktop.core.inspect_child import main as inspect_main

        sys.exit(inspect_main(argv[2:]))
