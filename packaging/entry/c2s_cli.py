"""Bundle entry point of ``c2s`` (the command line)."""

from _frozen import dispatch_child

if __name__ == "__main__":
    dispatch_child()
    from c2s_desktop.cli import main

    main()
