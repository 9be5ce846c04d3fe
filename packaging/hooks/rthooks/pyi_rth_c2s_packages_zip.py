"""Put the bundle's zipped pure-Python packages on the import path (see c2s_desktop.spec)."""

import os
import sys

_zip = os.path.join(sys._MEIPASS, "python-packages.zip")  # noqa: SLF001 - PyInstaller's folder
if os.path.isfile(_zip):
    sys.path.append(_zip)
