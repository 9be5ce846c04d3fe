"""Bundle entry point of ``c2s-desktop`` (the windowed app)."""

import sys

from _frozen import dispatch_child

if __name__ == "__main__":
    dispatch_child()
    from c2s_desktop.gui.app import main

    sys.exit(main())
