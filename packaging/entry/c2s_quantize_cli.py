"""Bundle entry point of ``c2s-quantize`` (checkpoint to GGUF converter)."""

from _frozen import dispatch_child

if __name__ == "__main__":
    dispatch_child()
    from c2s_quantize.cli import main

    main()
