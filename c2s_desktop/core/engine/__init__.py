"""Inference engines: one protocol (:mod:`.base`), local llama.cpp in a child process, remote."""
